package linkertest_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// BenchmarkLink measures link requests served to parallel clients, each
// linking a fresh pair of users.
func BenchmarkLink(b *testing.B) {
	for _, mode := range []struct {
		name     string
		inMemory bool
	}{{"tcp", false}, {"memory", true}} {
		b.Run(mode.name, func(b *testing.B) {
			s := linkertest.NewServer(linkertest.Config{InMemory: mode.inMemory})
			defer s.Close()
			tok := s.IssueToken(0)
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := next.Add(1)
					s.Seed(fmt.Sprintf("auth0|p%d", n), fmt.Sprintf("auth0|s%d", n))
					a, err := send(b.Context(), s, http.MethodPost, linkPath(fmt.Sprintf("auth0|p%d", n)), tok, ctJSON,
						fmt.Sprintf(`{"provider":"auth0","user_id":"s%d"}`, n))
					if err != nil || a.status != http.StatusCreated {
						b.Errorf("link: %v %d", err, a.status)
						return
					}
				}
			})
		})
	}
}
