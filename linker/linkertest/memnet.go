package linkertest

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// memListener is a net.Listener whose connections are in-memory pipes made
// by dial. Blocking on it is blocking on channels, which testing/synctest
// counts as durable, unlike blocking on a socket.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*memListener)(nil)

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for a dial or for Close, which makes it return net.ErrClosed.
func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and dial. It is idempotent.
func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns a placeholder address.
func (l *memListener) Addr() net.Addr { return memAddr{} }

// dial connects to the listener; it fails once the listener is closed or
// when ctx is done before the server accepts.
func (l *memListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		_ = client.Close()
		_ = server.Close()
		return nil, fmt.Errorf("dial linkertest: %w", net.ErrClosed)
	case <-ctx.Done():
		_ = client.Close()
		_ = server.Close()
		return nil, fmt.Errorf("dial linkertest: %w", ctx.Err())
	}
}

type memAddr struct{}

func (memAddr) Network() string { return "memory" }
func (memAddr) String() string  { return "linkertest.invalid:80" }
