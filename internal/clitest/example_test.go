package clitest_test

import (
	"fmt"

	"github.com/linkbatch/linkbatch/internal/clitest"
)

func ExampleGenPairs() {
	for _, p := range clitest.GenPairs("x", 2) {
		fmt.Println(clitest.CSVQuote(p.Primary) + "," + clitest.CSVQuote(p.Secondary))
	}
	// Output:
	// auth0|x00000pri,google-oauth2|x00000
	// auth0|x00001pri,github|x00001
}
