// Command csvcopy is the yardstick of linkbatch's dry-run figures: it
// generates an input file of pairs (-gen N) or reads a CSV file with
// encoding/csv and writes every record back out, the least any tool that
// reads the input and writes one row per row must do.
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "csvcopy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("csvcopy", flag.ContinueOnError)
	gen := fs.Int("gen", 0, "write an input of N valid, conflict-free pairs to --out instead of copying")
	in := fs.String("in", "", "CSV file to read")
	out := fs.String("out", "", "CSV file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	if *gen > 0 {
		generate(bw, *gen)
	} else if err := copyCSV(bw, *in); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// generate writes n rows like those of batch's BenchmarkDryRun.
func generate(w io.Writer, n int) {
	fmt.Fprintln(w, "primary_user_id,secondary_user_id")
	secondaries := []string{"google-oauth2|1077%012d", "github|%d", "samlp|acme|user%d@acme.com", "auth0|sec%024d"}
	for i := range n {
		fmt.Fprintf(w, "auth0|64b0%020d,"+secondaries[i%len(secondaries)]+"\n", i, i)
	}
}

func copyCSV(w io.Writer, in string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReaderSize(f, 64<<10))
	cr.ReuseRecord = true
	cw := csv.NewWriter(w)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			cw.Flush()
			return cw.Error()
		}
		if err != nil {
			return err
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
}
