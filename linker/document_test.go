package linker_test

import (
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
)

func TestDropIdPTokens(t *testing.T) {
	tests := []struct {
		name, doc, want string
		wantErr         bool
	}{
		{name: "tokens of every identity", doc: `{"user_id":"github|1","identities":[{"provider":"github","user_id":"1","access_token":"x","refresh_token":"y"},{"provider":"auth0","user_id":"2","access_token_secret":"z","profileData":{"n":1}}]}`,
			want: `{"identities":[{"provider":"github","user_id":"1"},{"profileData":{"n":1},"provider":"auth0","user_id":"2"}],"user_id":"github|1"}`},
		{name: "numbers kept as written", doc: `{"user_id":"a|1","app_metadata":{"big":12345678901234567890,"f":1.50}}`,
			want: `{"app_metadata":{"big":12345678901234567890,"f":1.50},"user_id":"a|1"}`},
		{name: "no identities", doc: `{"user_id":"a|1"}`, want: `{"user_id":"a|1"}`},
		{name: "not an object", doc: `[1]`, wantErr: true},
		{name: "null", doc: `null`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := linker.DropIdPTokens([]byte(tt.doc))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if strings.Contains(string(got), "token") {
				t.Errorf("a token is left: %s", got)
			}
		})
	}
}
