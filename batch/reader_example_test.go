package batch_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/linkbatch/linkbatch/batch"
)

func ExampleReader() {
	input := "\ufeffPrimary_User_Id,secondary_user_id,secondary_provider,note\r\n" +
		"auth0|64b0c1f2,google-oauth2|10774,,Google sign-up\r\n" +
		"auth0|64b0c1f3,acme|bob@acme.com,samlp,\r\n" +
		"\r\n" +
		"auth0|64b0c1f4,foo|1,,\r\n"
	rd, err := batch.NewReader(strings.NewReader(input))
	if err != nil {
		fmt.Println(err)
		return
	}
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		if row.Err != nil {
			fmt.Printf("line %d: invalid: %v\n", row.Line, row.Err)
			continue
		}
		req, _ := row.Request()
		fmt.Printf("line %d: link %s|%s into %s\n", row.Line, req.Provider, req.UserID, req.PrimaryID)
	}
	// Output:
	// line 2: link google-oauth2|10774 into auth0|64b0c1f2
	// line 3: link samlp|acme|bob@acme.com into auth0|64b0c1f3
	// line 5: invalid: secondary_user_id: provider "foo" is not a known identity provider
}
