package linkertest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

func ExampleNewServer() {
	s := linkertest.NewServer(linkertest.Config{})
	defer s.Close()
	s.Seed("auth0|alice", "google-oauth2|1077")

	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/v2/users/"+url.PathEscape("auth0|alice")+"/identities",
		strings.NewReader(`{"provider":"google-oauth2","user_id":"1077"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.IssueToken(0))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	primary, _ := s.LinkedTo("google-oauth2|1077")
	fmt.Println(resp.Status)
	fmt.Println("google-oauth2|1077 linked into", primary)
	fmt.Println("links applied:", s.Stats().LinksApplied)
	// Output:
	// 201 Created
	// google-oauth2|1077 linked into auth0|alice
	// links applied: 1
}
