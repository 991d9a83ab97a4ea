package report_test

import (
	"bytes"
	"fmt"
	"regexp"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/report"
)

func ExampleWrite() {
	var results bytes.Buffer
	w, _ := batch.NewResultWriter(&results, true)
	_ = w.Write(batch.Result{Line: 2, Primary: "auth0|1", Secondary: "github|1", Status: batch.StatusLinked, HTTPStatus: 201})
	_ = w.Write(batch.Result{Line: 3, Primary: "auth0|2", Secondary: "github|2", Status: batch.StatusFailed, HTTPStatus: 400, ErrorCode: "invalid_body"})

	var page bytes.Buffer
	if err := report.Write(&page, &results, report.Info{Input: "pairs.csv", Verify: true}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(regexp.MustCompile(`<h1>[^<]*</h1>`).FindString(page.String()))
	fmt.Println(bytes.Contains(page.Bytes(), []byte("HTTP 400 invalid_body")))
	// Output:
	// <h1>linkbatch run report: pairs.csv</h1>
	// true
}
