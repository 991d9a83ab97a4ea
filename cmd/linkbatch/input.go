package main

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
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
// per process). The first read opened records the hashes as it goes; every
// other read checks each block against them before passing on a byte of
// it, waiting for the first read to record that block if it has not yet,
// so a row is never read from bytes other than those the first read saw,
// even while both go on at once. A first read closed or failed before its
// end hands the recording on to a read still going (which checked the
// blocks so far). A file cut short is found when a block comes up short.
// Its methods are safe for concurrent use.
type input struct {
	f    *os.File
	size int64
	seed maphash.Seed

	mu       sync.Mutex
	recorded sync.Cond      // broadcast as blocks are recorded, and when the recorder stops
	blocks   []uint64       // the hashes recorded so far, in order
	done     bool           // blocks holds every block of the input
	recorder *checkedReader // the read recording blocks; nil for none
}

func newInput(f *os.File, size int64) *input {
	in := &input{f: f, size: size, seed: maphash.MakeSeed()}
	in.recorded.L = &in.mu
	return in
}

// open returns a new reader of the whole input. Its Read returns an error
// wrapping errInputChanged where the bytes differ from those of an earlier
// read, or the file ends before its size at open. The first reader opened
// records the hashes of the blocks; close a reader that is not read to its
// end, so that another may take the recording on.
func (in *input) open() (io.ReadCloser, error) {
	r := &checkedReader{in: in, src: io.NewSectionReader(in.f, 0, in.size)}
	in.mu.Lock()
	if !in.done && in.recorder == nil && len(in.blocks) == 0 {
		in.recorder = r
	}
	in.mu.Unlock()
	return r, nil
}

// checkedReader reads the input a block at a time; see input.
type checkedReader struct {
	in  *input
	src *io.SectionReader
	off int64 // bytes read from src
	buf []byte
	pos int // bytes of buf passed on
	err error
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

// Close stops the reader; a recorder hands the recording on.
func (r *checkedReader) Close() error {
	r.in.release(r)
	return nil
}

// Size returns the size of the input, in bytes.
func (r *checkedReader) Size() int64 { return r.in.size }

// next reads and checks (or records) the next block, or returns io.EOF
// after the last.
func (r *checkedReader) next() error {
	want := min(inputBlock, r.in.size-r.off)
	if want == 0 {
		r.in.release(r)
		return io.EOF
	}
	if r.buf == nil {
		r.buf = make([]byte, inputBlock)
	}
	r.buf, r.pos = r.buf[:want], 0
	n, err := io.ReadFull(r.src, r.buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		r.buf = r.buf[:0]
		r.in.release(r)
		return fmt.Errorf("%w: it ends at byte %d, but had %d bytes when the run started (was it truncated?)", errInputChanged, r.off+int64(n), r.in.size)
	case err != nil:
		r.buf = r.buf[:0]
		r.in.release(r)
		return err
	}
	if !r.in.check(r, int(r.off/inputBlock), maphash.Bytes(r.in.seed, r.buf)) {
		r.buf = r.buf[:0]
		return fmt.Errorf("%w: bytes %d to %d differ from when it was first read", errInputChanged, r.off, r.off+want)
	}
	r.off += want
	return nil
}

// check reports whether block i of r, whose hash is sum, is the block the
// recording holds, waiting for the recorder to record it; the recorder
// records it. When the recorder stopped before block i, r takes the
// recording on.
func (in *input) check(r *checkedReader, i int, sum uint64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.blocks) <= i && in.recorder != r {
		if in.recorder == nil {
			in.recorder = r // it checked every block before this one
			break
		}
		in.recorded.Wait()
	}
	if i < len(in.blocks) {
		return in.blocks[i] == sum
	}
	in.blocks = append(in.blocks, sum)
	if int64(len(in.blocks))*inputBlock >= in.size {
		in.done, in.recorder = true, nil
	}
	in.recorded.Broadcast()
	return true
}

// release stops r recording blocks, if it does, for another read to take
// the recording on.
func (in *input) release(r *checkedReader) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.recorder == r {
		in.recorder = nil
		in.recorded.Broadcast()
	}
}
