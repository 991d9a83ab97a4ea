package queue

import (
	"strings"
	"testing"
)

func TestRowFromFields(t *testing.T) {
	tests := []struct {
		name    string
		fields  map[string]string
		wantErr string // of the checked row; "" for a valid row
	}{
		{name: "pair", fields: map[string]string{"primary_user_id": "auth0|a", "secondary_user_id": "github|b"}},
		{name: "provider apart", fields: map[string]string{"primary_user_id": "auth0|a", "secondary_user_id": "b", "secondary_provider": "github"}},
		{name: "link_with", fields: map[string]string{"primary_user_id": "auth0|a", "link_with": "aa.bb.cc"}},
		{name: "no fields", fields: nil, wantErr: "no fields"},
		{name: "unknown field", fields: map[string]string{"primary_user_id": "auth0|a", "secundary": "x"}, wantErr: `field "secundary" is not a column`},
		{name: "invalid id", fields: map[string]string{"primary_user_id": "a", "secondary_user_id": "github|b"}, wantErr: "primary_user_id"},
		{name: "link_with and provider", fields: map[string]string{"primary_user_id": "auth0|a", "link_with": "aa.bb.cc", "secondary_provider": "github"}, wantErr: "secondary_provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := RowFromFields(tt.fields).Check()
			switch {
			case tt.wantErr == "" && row.Err != nil:
				t.Errorf("error %v, want a valid row", row.Err)
			case tt.wantErr != "" && (row.Err == nil || !strings.Contains(row.Err.Error(), tt.wantErr)):
				t.Errorf("error %v, want %q", row.Err, tt.wantErr)
			}
		})
	}
}

func TestRowFromJSON(t *testing.T) {
	tests := []struct{ body, wantErr string }{
		{`{"primary_user_id":"auth0|a","secondary_user_id":"github|b"}`, ""},
		{`["auth0|a"]`, "not a JSON object"},
		{`null`, "not a JSON object"},
		{`{"primary_user_id":"auth0|a","secondary_user_id":5}`, "is not a string"},
		{`{"primary_user_id":"auth0|a"} {}`, "more than one"},
		{`{"link_with":"eyJh.eyJz.c2ln","primary_user_id":"x"}`, "primary_user_id"},
	}
	for _, tt := range tests {
		row := RowFromJSON([]byte(tt.body)).Check()
		switch {
		case tt.wantErr == "" && row.Err != nil:
			t.Errorf("%s: error %v, want a valid row", tt.body, row.Err)
		case tt.wantErr != "" && (row.Err == nil || !strings.Contains(row.Err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want %q", tt.body, row.Err, tt.wantErr)
		}
		if row.Err != nil && strings.Contains(row.Err.Error(), "eyJ") {
			t.Errorf("%s: error %q quotes the link_with token", tt.body, row.Err)
		}
	}
}

// FuzzRowFromJSON: any body gives a row that is valid or says why not,
// never a panic, and an error never quotes the link_with value.
func FuzzRowFromJSON(f *testing.F) {
	f.Add([]byte(`{"primary_user_id":"auth0|a","secondary_user_id":"github|b"}`))
	f.Add([]byte(`{"primary_user_id":"auth0|a","link_with":"SECRETa.b.c","connection_id":"x"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		row := RowFromJSON(body).Check()
		if row.Err == nil {
			if _, err := row.Request(); err != nil {
				t.Fatalf("valid row without a request: %v", err)
			}
			return
		}
		if row.LinkWith != "" && strings.Contains(row.Err.Error(), row.LinkWith) {
			t.Fatalf("error %q quotes link_with", row.Err)
		}
	})
}
