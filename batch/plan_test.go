package batch

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

const planHeader = "primary_user_id,secondary_user_id,secondary_provider,connection_id,link_with\n"

func TestBuildPlan(t *testing.T) {
	otherJWT := strings.Replace(testJWT, "c2ln", "c2lo", 1)
	tests := []struct {
		name string
		rows []string // data rows; the first is on line 2
		want map[int]Verdict
	}{
		{
			name: "all distinct",
			rows: []string{"auth0|1,github|1,,,", "auth0|1,github|2,,,", "auth0|2,samlp|acme|1,,,", "auth0|2,,,," + testJWT},
			want: map[int]Verdict{},
		},
		{
			name: "invalid rows keep their message",
			rows: []string{"auth0|1,foo|1,,,", "auth0|1,git\"hub|1,,,", "auth0|1,github|1,,"},
			want: map[int]Verdict{
				2: {Status: "invalid", Err: `secondary_user_id: provider "foo" is not a known identity provider`},
				3: {Status: "invalid", Err: `parse error on line 3, column 12: bare " in non-quoted-field`},
				4: {Status: "invalid", Err: "record on line 4: wrong number of fields"},
			},
		},
		{
			name: "exact duplicates name the first line",
			rows: []string{"auth0|1,github|1,,,", "auth0|2,github|2,,,", "auth0|1,github|1,,,", "auth0|1,github|1,,,"},
			want: map[int]Verdict{
				4: {Status: "skipped", Err: "duplicate of line 2", Other: 2},
				5: {Status: "skipped", Err: "duplicate of line 2", Other: 2},
			},
		},
		{
			name: "duplicate however the secondary is written",
			rows: []string{"auth0|1,samlp|acme|bob,,,", "auth0|1,acme|bob,samlp,,", "auth0|1,samlp|acme|bob,samlp,,"},
			want: map[int]Verdict{
				3: {Status: "skipped", Err: "duplicate of line 2", Other: 2},
				4: {Status: "skipped", Err: "duplicate of line 2", Other: 2},
			},
		},
		{
			name: "link_with duplicates and distinct tokens",
			rows: []string{"auth0|1,,,," + testJWT, "auth0|1,,,," + otherJWT, "auth0|1,,,," + testJWT},
			want: map[int]Verdict{4: {Status: "skipped", Err: "duplicate of line 2", Other: 2}},
		},
		{
			name: "invalid rows are not duplicates of each other",
			rows: []string{"auth0|1,auth0|1,,,", "auth0|1,auth0|1,,,"},
			want: map[int]Verdict{
				2: {Status: "invalid", Err: "secondary_user_id: is the primary itself"},
				3: {Status: "invalid", Err: "secondary_user_id: is the primary itself"},
			},
		},
		{
			name: "secondary given to two primaries",
			rows: []string{"auth0|9,github|0,,,", "auth0|1,github|1,,,", "auth0|2,github|1,,,", "auth0|3,1,github,,"},
			want: map[int]Verdict{
				4: {Status: "invalid", Err: "secondary_user_id: also given to a different primary on line 3", Other: 3},
				5: {Status: "invalid", Err: "secondary_user_id: also given to a different primary on line 3", Other: 3},
			},
		},
		{
			name: "secondary given twice to one primary with different connections",
			rows: []string{"auth0|1,auth0|2,,,", "auth0|1,auth0|2,,con_Ab12Cd34Ef56Gh78,"},
			want: map[int]Verdict{
				3: {Status: "invalid", Err: "secondary_user_id: also given to this primary on line 2, with another connection_id", Other: 2},
			},
		},
		{
			name: "chain: secondary later a primary",
			rows: []string{"auth0|1,github|1,,,", "github|1,github|2,,,"},
			want: map[int]Verdict{3: {Status: "invalid", Err: "primary_user_id: is a secondary on line 2", Other: 2}},
		},
		{
			name: "chain: primary later a secondary",
			rows: []string{"github|1,github|2,,,", "auth0|1,github|1,,,"},
			want: map[int]Verdict{3: {Status: "invalid", Err: "secondary_user_id: is a primary on line 2", Other: 2}},
		},
		{
			name: "chain through a link_with primary",
			rows: []string{"github|1,,,," + testJWT, "auth0|1,github|1,,,", "auth0|2,github|2,,,", "github|2,,,," + testJWT},
			want: map[int]Verdict{
				3: {Status: "invalid", Err: "secondary_user_id: is a primary on line 2", Other: 2},
				5: {Status: "invalid", Err: "primary_user_id: is a secondary on line 4", Other: 4},
			},
		},
		{
			name: "pair in both directions",
			rows: []string{"auth0|1,github|1,,,", "github|1,auth0|1,,,"},
			want: map[int]Verdict{3: {Status: "invalid", Err: "secondary_user_id: line 2 links the same two users the other way round", Other: 2}},
		},
		{
			name: "earliest conflict wins",
			rows: []string{"auth0|5,github|1,,,", "github|1,auth0|9,,,", "auth0|1,github|1,,,", "github|1,auth0|1,,,"},
			want: map[int]Verdict{
				3: {Status: "invalid", Err: "primary_user_id: is a secondary on line 2", Other: 2},
				4: {Status: "invalid", Err: "secondary_user_id: also given to a different primary on line 2", Other: 2},
				5: {Status: "invalid", Err: "primary_user_id: is a secondary on line 2", Other: 2},
			},
		},
		{
			// Line 3 is refused (auth0|2 is a secondary on line 2), yet it
			// still counts as the first to give github|3, so line 4 is
			// refused too: the file wants github|3 in two places.
			name: "a refused row still counts as earlier",
			rows: []string{"auth0|1,auth0|2,,,", "auth0|2,github|3,,,", "auth0|4,github|3,,,"},
			want: map[int]Verdict{
				3: {Status: "invalid", Err: "primary_user_id: is a secondary on line 2", Other: 2},
				4: {Status: "invalid", Err: "secondary_user_id: also given to a different primary on line 3", Other: 3},
			},
		},
		{
			name: "a duplicate of a refused row is skipped",
			rows: []string{"auth0|1,github|1,,,", "auth0|2,github|1,,,", "auth0|2,github|1,,,"},
			want: map[int]Verdict{
				3: {Status: "invalid", Err: "secondary_user_id: also given to a different primary on line 2", Other: 2},
				4: {Status: "skipped", Err: "duplicate of line 3", Other: 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := planHeader + strings.Join(tt.rows, "\n") + "\n"
			p, err := BuildPlan(strings.NewReader(input))
			if err != nil {
				t.Fatalf("BuildPlan() error = %v", err)
			}
			if p.Rows() != len(tt.rows) {
				t.Errorf("Rows() = %d, want %d", p.Rows(), len(tt.rows))
			}
			for line := 0; line <= len(tt.rows)+2; line++ {
				got, ok := p.Verdict(line)
				want, wantOK := tt.want[line]
				if ok != wantOK || got != want {
					t.Errorf("Verdict(%d) = %+v, %v; want %+v, %v", line, got, ok, want, wantOK)
				}
			}
			checkPlan(t, readAll(t, input), input)
		})
	}
}

func TestPlanVerdictOutOfRange(t *testing.T) {
	p, err := BuildPlan(strings.NewReader(planHeader + "auth0|1,foo|1,,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []int{-1, 0, 1, 3, 1 << 40} {
		if v, ok := p.Verdict(line); ok {
			t.Errorf("Verdict(%d) = %+v, want none", line, v)
		}
	}
	if p.Bytes() <= 0 {
		t.Errorf("Bytes() = %d, want > 0", p.Bytes())
	}
}

// TestPlanMatchesModel checks BuildPlan against a direct, quadratic
// reading of its documented rules, on random files drawn from few users so
// that every kind of clash is frequent.
func TestPlanMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	users := []string{"auth0|1", "auth0|2", "github|1", "github|2", "samlp|acme|1", "samlp|acme|2"}
	for iter := range 2000 {
		var b strings.Builder
		b.WriteString(planHeader)
		for range 1 + rng.IntN(12) {
			primary, secondary := users[rng.IntN(len(users))], users[rng.IntN(len(users))]
			provider, conn, linkWith := "", "", ""
			switch rng.IntN(10) {
			case 0:
				secondary, linkWith = "", []string{testJWT, testJWT + "x"}[rng.IntN(2)]
			case 1:
				provider, secondary, _ = strings.Cut(secondary, "|")
				secondary = []string{secondary, provider + "|" + secondary}[rng.IntN(2)]
			case 2:
				conn = testConn
			case 3:
				secondary = "foo|1"
			}
			fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", primary, secondary, provider, conn, linkWith)
		}
		input := b.String()
		t.Run(fmt.Sprint(iter), func(t *testing.T) {
			checkPlan(t, readAll(t, input), input)
		})
	}
}

// checkPlan builds the plan of input and compares it with a direct model
// of the rules applied to rows (what a Reader returned for input), then
// checks that the rows left to send do not contradict each other.
func checkPlan(t *testing.T, rows []Row, input string) {
	t.Helper()
	p, err := BuildPlan(strings.NewReader(input))
	if err != nil {
		t.Fatalf("BuildPlan() error = %v", err)
	}
	if p.Rows() != len(rows) {
		t.Fatalf("Rows() = %d, want %d", p.Rows(), len(rows))
	}
	want := modelVerdicts(rows)
	for _, row := range rows {
		got, ok := p.Verdict(row.Line)
		w, wantOK := want[row.Line]
		if ok != wantOK || got != w {
			t.Fatalf("Verdict(%d) = %+v, %v; want %+v, %v\ninput:\n%s", row.Line, got, ok, w, wantOK, input)
		}
		if ok && looksLikeJWT(row.LinkWith) && strings.Contains(got.Err, row.LinkWith) {
			t.Fatalf("Verdict(%d) shows link_with", row.Line)
		}
	}
	asSecondary := map[string]int{}
	asPrimary := map[string]int{}
	for _, row := range rows {
		if _, ok := p.Verdict(row.Line); ok {
			continue
		}
		if row.Err != nil {
			t.Fatalf("line %d has error %v but no verdict", row.Line, row.Err)
		}
		asPrimary[row.Primary] = row.Line
		if key := row.SecondaryKey(); key != "" {
			if line, ok := asSecondary[key]; ok {
				t.Fatalf("lines %d and %d both send secondary %s", line, row.Line, key)
			}
			asSecondary[key] = row.Line
		}
	}
	for user, line := range asSecondary {
		if other, ok := asPrimary[user]; ok {
			t.Fatalf("%s is sent as a secondary on line %d and as a primary on line %d", user, line, other)
		}
	}
}

// modelVerdicts applies the rules of BuildPlan's documentation directly.
func modelVerdicts(rows []Row) map[int]Verdict {
	out := map[int]Verdict{}
	var valid []Row
	for _, row := range rows {
		if row.Err != nil {
			out[row.Line] = Verdict{Status: "invalid", Err: row.Err.Error()}
			continue
		}
		valid = append(valid, row)
	}
	for j, row := range valid {
		key := row.SecondaryKey()
		dup, again, sameSecondary, isPrimary, isSecondary := 0, 0, false, 0, 0
		for _, prev := range valid[:j] {
			prevKey := prev.SecondaryKey()
			if dup == 0 && prev.Primary == row.Primary && prevKey == key && prev.ConnectionID == row.ConnectionID && prev.LinkWith == row.LinkWith {
				dup = prev.Line
			}
			if again == 0 && key != "" && prevKey == key {
				again, sameSecondary = prev.Line, prev.Primary == row.Primary
			}
			if isPrimary == 0 && key != "" && prev.Primary == key {
				isPrimary = prev.Line
			}
			if isSecondary == 0 && prevKey != "" && prevKey == row.Primary {
				isSecondary = prev.Line
			}
		}
		first := 0
		for _, l := range []int{again, isPrimary, isSecondary} {
			if l != 0 && (first == 0 || l < first) {
				first = l
			}
		}
		var v Verdict
		switch {
		case dup != 0:
			v = Verdict{Status: "skipped", Err: fmt.Sprintf("duplicate of line %d", dup), Other: dup}
		case first == 0:
			continue
		case again == first && sameSecondary:
			v = invalidf(first, "secondary_user_id: also given to this primary on line %d, with another connection_id", first)
		case again == first:
			v = invalidf(first, "secondary_user_id: also given to a different primary on line %d", first)
		case isPrimary == first && isSecondary == first:
			v = invalidf(first, "secondary_user_id: line %d links the same two users the other way round", first)
		case isPrimary == first:
			v = invalidf(first, "secondary_user_id: is a primary on line %d", first)
		default:
			v = invalidf(first, "primary_user_id: is a secondary on line %d", first)
		}
		out[row.Line] = v
	}
	return out
}

func TestBuildPlanManyChunks(t *testing.T) {
	// Two records a row: three chunks.
	const n = 3 * planChunk / 2
	tail := fmt.Sprintf("auth0|%024x,samlp|acme|user1@acme.example,,\n", 2) + // line n+2: user1 is row 1's secondary
		fmt.Sprintf("auth0|%024x,samlp|acme|user2@acme.example,,\n", 2) + // line n+3: repeats row 2
		fmt.Sprintf("samlp|acme|user%d@acme.example,github|1,,\n", n-1) // line n+4: row n-1's secondary
	p, err := BuildPlan(io.MultiReader(&genInput{n: n}, strings.NewReader(tail)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Rows() != n+3 {
		t.Errorf("Rows() = %d, want %d", p.Rows(), n+3)
	}
	want := map[int]Verdict{
		n + 2: {Status: "invalid", Err: "secondary_user_id: also given to a different primary on line 2", Other: 2},
		n + 3: {Status: "skipped", Err: "duplicate of line 3", Other: 3},
		n + 4: {Status: "invalid", Err: fmt.Sprintf("primary_user_id: is a secondary on line %d", n), Other: n},
	}
	for line := 1; line <= n+5; line++ {
		got, ok := p.Verdict(line)
		if w, wantOK := want[line]; ok != wantOK || got != w {
			t.Errorf("Verdict(%d) = %+v, %v; want %+v, %v", line, got, ok, w, wantOK)
		}
	}
}
