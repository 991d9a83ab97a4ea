package linker_test

import (
	"fmt"

	"github.com/linkbatch/linkbatch/linker"
)

// A full Auth0 user id splits at its first '|': the rest, '|' included, is
// the identity's user_id that a link request sends.
func ExampleParseUserID() {
	for _, id := range []string{"google-oauth2|1234567890", "samlp|acme|bob@acme.com", "63d17c6b77d74b740960460a"} {
		provider, userID, err := linker.ParseUserID(id)
		if err != nil {
			fmt.Printf("%s: %v\n", id, err)
			continue
		}
		fmt.Printf("provider=%s user_id=%s\n", provider, userID)
	}
	// Output:
	// provider=google-oauth2 user_id=1234567890
	// provider=samlp user_id=acme|bob@acme.com
	// 63d17c6b77d74b740960460a: has no provider prefix (want provider|id)
}
