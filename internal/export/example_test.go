package export_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/linkbatch/linkbatch/internal/export"
)

func ExampleReader() {
	data := `{"user_id":"auth0|64b0","email":"Ann@Example.com","email_verified":true,"created_at":"2021-03-04T05:06:07.000Z"}
{"user_id":"google-oauth2|1077","email":"ann@example.com","email_verified":true,"identities":[{"provider":"google-oauth2","user_id":1077,"connection":"google-oauth2"}]}
`
	rd, err := export.NewReader(strings.NewReader(data))
	if err != nil {
		fmt.Println(err)
		return
	}
	for {
		u, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(u.Line, u.UserID, u.Email, u.EmailVerified, u.Identities[0].FullID())
	}
	// Output:
	// 1 auth0|64b0 Ann@Example.com true auth0|64b0
	// 2 google-oauth2|1077 ann@example.com true google-oauth2|1077
}
