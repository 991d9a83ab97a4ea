package main

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"sync"
)

// inputBlock is the size of the blocks of the input that are checked.
const inputBlock = 64 << 10

// errInputChanged is wrapped by the error of a read of the input that did
// not find the bytes an earlier read found.
var errInputChanged = errors.New("the input changed during the run")

// input is the input file, open once and read several times (the plan, the
// fingerprint, the run itself), always as the bytes it held when it was
// opened. Each read hashes every 64 KiB block it reads (hash/maphash, keyed
// per process); the first read to reach the end records the hashes, and
// every later read checks each block before passing on a byte of it, so a
// row is never read from bytes other than those the plan saw. A file cut
// short is found when a block comes up short. Its methods are safe for
// concurrent use.
type input struct {
	f    *os.File
	size int64
	seed maphash.Seed

	mu     sync.Mutex
	blocks []uint64 // the hashes of the first whole read; nil until then
}

func newInput(f *os.File, size int64) *input {
	return &input{f: f, size: size, seed: maphash.MakeSeed()}
}

// open returns a new reader of the whole input. Its Read returns an error
// wrapping errInputChanged where the bytes differ from those of an earlier
// read, or the file ends before its size at open.
func (in *input) open() (io.ReadCloser, error) {
	in.mu.Lock()
	ref := in.blocks
	in.mu.Unlock()
	return &checkedReader{in: in, src: io.NewSectionReader(in.f, 0, in.size), ref: ref}, nil
}

// checkedReader reads the input a block at a time; see input.
type checkedReader struct {
	in   *input
	src  *io.SectionReader
	ref  []uint64 // the block hashes to check against; nil to record them
	sums []uint64 // the block hashes read, when ref is nil
	off  int64    // bytes read from src
	buf  []byte
	pos  int // bytes of buf passed on
	err  error
}

func (r *checkedReader) Read(p []byte) (int, error) {
	if r.pos == len(r.buf) {
		if r.err == nil {
			r.err = r.next()
		}
		if r.err != nil {
			return 0, r.err
		}
	}
	n := copy(p, r.buf[r.pos:])
	r.pos += n
	return n, nil
}

func (r *checkedReader) Close() error { return nil }

// Size returns the size of the input, in bytes.
func (r *checkedReader) Size() int64 { return r.in.size }

// next reads and checks the next block, or returns io.EOF after the last.
func (r *checkedReader) next() error {
	want := min(inputBlock, r.in.size-r.off)
	if want == 0 {
		return r.end()
	}
	if r.buf == nil {
		r.buf = make([]byte, inputBlock)
	}
	r.buf, r.pos = r.buf[:want], 0
	n, err := io.ReadFull(r.src, r.buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		r.buf = r.buf[:0]
		return fmt.Errorf("%w: it ends at byte %d, but had %d bytes when the run started (was it truncated?)", errInputChanged, r.off+int64(n), r.in.size)
	case err != nil:
		r.buf = r.buf[:0]
		return err
	}
	sum := maphash.Bytes(r.in.seed, r.buf)
	i := int(r.off / inputBlock)
	if r.ref != nil && r.ref[i] != sum {
		r.buf = r.buf[:0]
		return fmt.Errorf("%w: bytes %d to %d differ from when it was first read", errInputChanged, r.off, r.off+want)
	}
	if r.ref == nil {
		r.sums = append(r.sums, sum)
	}
	r.off += want
	return nil
}

// end records the hashes of a whole read, or checks them against those
// another read recorded meanwhile.
func (r *checkedReader) end() error {
	if r.ref != nil {
		return io.EOF
	}
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	if r.in.blocks == nil {
		r.in.blocks = r.sums
		return io.EOF
	}
	if !slices.Equal(r.in.blocks, r.sums) {
		return fmt.Errorf("%w: two reads of it at the start found different bytes", errInputChanged)
	}
	return io.EOF
}
