package batch

import (
	"errors"
	"testing"
)

func TestFailStreak(t *testing.T) {
	dns, refused, ok := Result{fatal: "dns"}, Result{fatal: "connection_refused"}, Result{Status: StatusLinked}
	tests := []struct {
		name    string
		results []Result
		stopAt  int // index of the result that stops the run; -1 for none
	}{
		{"five alike", []Result{dns, dns, dns, dns, dns}, 4},
		{"a success starts over", []Result{dns, dns, dns, dns, ok, dns, dns, dns, dns}, -1},
		{"another kind starts over", []Result{dns, dns, dns, dns, refused, refused, refused, refused, refused}, 8},
		{"no failures", []Result{ok, ok, ok, ok, ok, ok}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s failStreak
			stopped := -1
			for i, r := range tt.results {
				if err := s.add(r); err != nil && stopped < 0 {
					stopped = i
					var fa *FailingAlikeError
					if !errors.Is(err, ErrEveryRowFails) || !errors.As(err, &fa) || fa.Kind != r.fatal || fa.Rows != abortStreak {
						t.Errorf("error %v, want a FailingAlikeError of kind %s after %d rows", err, r.fatal, abortStreak)
					}
				}
			}
			if stopped != tt.stopAt {
				t.Errorf("stopped at result %d, want %d", stopped, tt.stopAt)
			}
		})
	}
}
