package pairing_test

import (
	"fmt"
	"time"

	"github.com/linkbatch/linkbatch/internal/pairing"
)

func ExamplePlanner() {
	users := []pairing.User{
		{ID: "auth0|64b0", Email: "Ann@Example.com ", EmailVerified: true, CreatedAt: time.Date(2022, 5, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "google-oauth2|1077", Email: "ann@example.com", EmailVerified: true, CreatedAt: time.Date(2019, 2, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "github|55", Email: "ann@example.com", EmailVerified: false},
		{ID: "auth0|77", Email: "bo@example.com", EmailVerified: true, CreatedAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "github|78", Email: "BO@example.com", EmailVerified: true, CreatedAt: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	p := pairing.NewPlanner(pairing.DefaultConfig())
	for _, u := range users { // first pass
		p.Add(u)
	}
	p.Decide()
	for _, u := range users { // second pass
		pl := p.Place(u)
		switch pl.Action {
		case pairing.Link:
			fmt.Printf("link %s into %s (%s)\n", u.ID, pl.Primary, pl.Reason)
		case pairing.SetAside, pairing.UnverifiedEmail:
			fmt.Printf("set aside %s: %s\n", u.ID, pl.Reason)
		}
	}
	// Output:
	// set aside auth0|64b0: mixed: 2 verified and 1 unverified emails
	// set aside google-oauth2|1077: mixed: 2 verified and 1 unverified emails
	// set aside github|55: mixed: 2 verified and 1 unverified emails
	// link github|78 into auth0|77 (oldest: created 2020-01-01T00:00:00Z)
}
