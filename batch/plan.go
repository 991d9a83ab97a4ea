package batch

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"unsafe"
)

// Verdict says why a row must not be sent.
type Verdict struct {
	Status Status // StatusInvalid or StatusSkipped
	Err    string // "FIELD: what is wrong"; never contains a link_with JWT
	Other  int    // the earlier line the row clashes with or repeats; 0 if none
}

// Plan is the result of the pre-pass over an input file: how many rows it
// has and, for every row that must not be sent, why. It is read-only after
// BuildPlan and safe for concurrent use.
type Plan struct {
	rows     int
	verdicts []planVerdict // sorted by line
	bytes    int
}

// Verdict codes of planVerdict.
const (
	planRowErr             uint8 = iota // the row's own error, in msg
	planDuplicate                       // exact repeat of other
	planSecondaryAgain                  // secondary already given, to another primary, on other
	planSecondarySamePair               // secondary already given to this primary, with another connection_id
	planSecondaryIsPrimary              // secondary is a primary on other
	planPrimaryIsSecondary              // primary is a secondary on other
	planReversed                        // other links the same two users the other way round
)

type planVerdict struct {
	line, other uint32
	code        uint8
	msg         string // planRowErr only
}

// Record kinds, in their sort order within one user's group.
const (
	planKindPrimary   uint8 = iota // key: the primary; aux: hash of secondary and connection_id
	planKindPrimaryLW              // key: the primary; aux: hash of the link_with JWT
	planKindSecondary              // key: the secondary; aux: the primary's key
)

// planRec is what the pre-pass keeps of a valid row: two of these (one for
// a link_with row), 24 bytes each.
type planRec struct {
	key, aux uint64
	line     uint32
	kind     uint8
}

// planCand is one reason, found while scanning one user's group, for which
// a row must not be sent; a row may collect several.
type planCand struct {
	line, other uint32
	code        uint8
}

// BuildPlan reads the whole input once, holding one row at a time, and
// decides which rows must not be sent. While it runs it keeps 48 bytes per
// valid row (two 24-byte records, sorted in 1.5 MiB chunks and merged; on
// Unix the chunks are mapped outside the heap, so that they do not double
// the collector's goal);
// the Plan it returns keeps only the verdicts. It returns the errors of NewReader
// for a file that cannot be read as input, and the I/O error (as it is) that
// stopped reading.
//
// A row must not be sent ("invalid") when it could not be read or fails
// Row.Validate, and ("skipped") when it repeats an earlier row exactly:
// same primary, same secondary (provider|user_id, however it was written),
// same connection_id and same link_with. Among the other rows, those that
// contradict an earlier one are invalid:
//
//   - the secondary was already a secondary on an earlier line, for another
//     primary or for the same primary with another connection_id (a
//     secondary can be merged once);
//   - the secondary is a primary on an earlier line, or the primary is a
//     secondary on an earlier line (once linked, a secondary is no longer a
//     user, so chains are refused), or both on the same line: the pair is
//     given the other way round there.
//
// "Earlier" means a smaller line number among all rows that are readable and
// pass Validate, whether or not they are themselves refused for a conflict.
// So the first row of a conflict stays valid, every later one is refused,
// the verdicts depend only on the file's content (not on a processing
// order), and no two rows left to send contradict each other. When a row
// has several conflicts, the one with the earliest other line is reported.
// link_with rows have no known secondary: only their primary is checked.
//
// Users and rows are compared by 64-bit hashes (hash/maphash, seeded per
// call), not by their text. Equal ids always hash equally, so no conflict is
// ever missed; two different ids hashing equally (odds about n²/2⁶⁵ for n
// distinct ids) could only make rows be refused that need not be, never
// let a contradicting row through.
func BuildPlan(r io.Reader) (*Plan, error) { return Format{}.BuildPlan(r) }

// BuildPlan is BuildPlan reading the input in this Format, as
// Format.NewReader does.
func (f Format) BuildPlan(r io.Reader) (*Plan, error) {
	rd, err := f.NewReader(r)
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	var recs planRecs
	defer recs.free()
	var h maphash.Hash // seeded at random on first use
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if row.Line > math.MaxUint32 {
			return nil, fmt.Errorf("line %d: input too long for the plan", row.Line)
		}
		p.rows++
		line := uint32(row.Line)
		if row.Err != nil {
			p.verdicts = append(p.verdicts, planVerdict{line: line, code: planRowErr, msg: row.Err.Error()})
			continue
		}
		primary := hashStrings(&h, row.Primary)
		if row.LinkWith != "" {
			recs.add(planRec{key: primary, aux: hashStrings(&h, row.LinkWith), line: line, kind: planKindPrimaryLW})
			continue
		}
		provider, userID, _ := row.secondary()
		recs.add(planRec{key: primary, aux: hashStrings(&h, provider, "|", userID, "\x00", row.ConnectionID), line: line, kind: planKindPrimary})
		recs.add(planRec{key: hashStrings(&h, provider, "|", userID), aux: primary, line: line, kind: planKindSecondary})
	}
	cands, indexBytes := planConflicts(&recs)
	p.verdicts = mergeVerdicts(p.verdicts, resolve(cands))
	p.bytes = indexBytes + cap(cands)*int(unsafe.Sizeof(planCand{})) + p.retainedBytes()
	return p, nil
}

// planChunk is the number of records in one chunk of planRecs: 1.5 MiB.
const planChunk = 1 << 16

// planRecs holds the records of the pre-pass in sorted chunks, so that
// neither growing nor sorting them ever copies the whole set.
type planRecs struct {
	chunks [][]planRec // all full but the last; each sorted once full
	mapped [][]byte    // the chunks mapped by mapChunk, to release
}

// free releases the mapped chunks; rs must not be used afterwards.
func (rs *planRecs) free() {
	for _, b := range rs.mapped {
		unmapChunk(b)
	}
	rs.mapped, rs.chunks = nil, nil
}

func (rs *planRecs) add(rec planRec) {
	n := len(rs.chunks)
	if n == 0 || len(rs.chunks[n-1]) == planChunk {
		if n > 0 {
			slices.SortFunc(rs.chunks[n-1], comparePlanRecs)
		}
		size := planChunk
		if n == 0 {
			size = 1024 // most inputs are small
		}
		var c []planRec
		if size == planChunk {
			var b []byte
			if c, b = mapChunk(size); b != nil {
				rs.mapped = append(rs.mapped, b)
			}
		}
		if c == nil {
			c = make([]planRec, 0, size)
		}
		rs.chunks = append(rs.chunks, c)
		n++
	}
	rs.chunks[n-1] = append(rs.chunks[n-1], rec)
}

// comparePlanRecs orders records by key (the user), then kind, aux and line.
func comparePlanRecs(a, b planRec) int {
	switch {
	case a.key != b.key:
		return cmp.Compare(a.key, b.key)
	case a.kind != b.kind:
		return cmp.Compare(a.kind, b.kind)
	case a.aux != b.aux:
		return cmp.Compare(a.aux, b.aux)
	}
	return cmp.Compare(a.line, b.line)
}

// bytes returns the memory held by the records.
func (rs *planRecs) bytes() int {
	n := 0
	for _, c := range rs.chunks {
		n += cap(c) * int(unsafe.Sizeof(planRec{}))
	}
	return n
}

// sorted calls yield with the records of each key, in order, merging the
// sorted chunks; it consumes rs. The slice passed to yield is reused.
func (rs *planRecs) sorted(yield func(group []planRec)) {
	if n := len(rs.chunks); n > 0 {
		slices.SortFunc(rs.chunks[n-1], comparePlanRecs)
	}
	// heap holds the non-empty chunks, ordered by their first record.
	heap := slices.DeleteFunc(rs.chunks, func(c []planRec) bool { return len(c) == 0 })
	rs.chunks = nil
	less := func(i, j int) bool { return comparePlanRecs(heap[i][0], heap[j][0]) < 0 }
	down := func(i int) {
		for {
			m := i
			if l := 2*i + 1; l < len(heap) && less(l, m) {
				m = l
			}
			if r := 2*i + 2; r < len(heap) && less(r, m) {
				m = r
			}
			if m == i {
				return
			}
			heap[i], heap[m] = heap[m], heap[i]
			i = m
		}
	}
	for i := len(heap)/2 - 1; i >= 0; i-- {
		down(i)
	}
	var group []planRec
	for len(heap) > 0 {
		rec := heap[0][0]
		if heap[0] = heap[0][1:]; len(heap[0]) == 0 {
			heap[0] = heap[len(heap)-1]
			heap[len(heap)-1] = nil // let the collector take the chunk back
			heap = heap[:len(heap)-1]
		}
		down(0)
		if len(group) > 0 && group[0].key != rec.key {
			yield(group)
			group = group[:0]
		}
		group = append(group, rec)
	}
	if len(group) > 0 {
		yield(group)
	}
}

// hashStrings hashes the concatenation of parts. Parts never contain NUL
// (Validate refuses control characters), so "\x00" separates them.
func hashStrings(h *maphash.Hash, parts ...string) uint64 {
	h.Reset()
	for _, s := range parts {
		_, _ = h.WriteString(s) // never fails
	}
	return h.Sum64()
}

// planConflicts returns every reason found for refusing a row, and the
// memory the records used. It scans the records of each user (one key)
// together: where the user is a primary, then where it is a secondary.
func planConflicts(recs *planRecs) ([]planCand, int) {
	const none = math.MaxUint32
	indexBytes := recs.bytes()
	var cands []planCand
	groupCap := 0
	recs.sorted(func(group []planRec) {
		groupCap = max(groupCap, cap(group))
		mid := 0 // group[:mid] are primaries, group[mid:] secondaries
		firstPrimary, firstSecondary := uint32(none), uint32(none)
		var firstSecondaryAux uint64
		for i, rec := range group {
			if rec.kind != planKindSecondary {
				mid = i + 1
				firstPrimary = min(firstPrimary, rec.line)
			} else if rec.line < firstSecondary {
				firstSecondary, firstSecondaryAux = rec.line, rec.aux
			}
		}
		// As a primary: a run of equal (kind, aux) is one exact row, first
		// at its first line; the others repeat it.
		runFirst := 0
		for i, rec := range group[:mid] {
			if group[runFirst].kind != rec.kind || group[runFirst].aux != rec.aux {
				runFirst = i
			} else if i > runFirst {
				cands = append(cands, planCand{line: rec.line, other: group[runFirst].line, code: planDuplicate})
			}
			if rec.line > firstSecondary {
				cands = append(cands, planCand{line: rec.line, other: firstSecondary, code: planPrimaryIsSecondary})
			}
		}
		// As a secondary.
		for _, rec := range group[mid:] {
			if rec.line > firstSecondary {
				code := planSecondaryAgain
				if rec.aux == firstSecondaryAux {
					code = planSecondarySamePair
				}
				cands = append(cands, planCand{line: rec.line, other: firstSecondary, code: code})
			}
			if rec.line > firstPrimary {
				cands = append(cands, planCand{line: rec.line, other: firstPrimary, code: planSecondaryIsPrimary})
			}
		}
	})
	return cands, indexBytes + groupCap*int(unsafe.Sizeof(planRec{}))
}

// resolve turns the reasons found for each line into one verdict per line:
// a repeat is skipped; otherwise the conflict with the earliest other line
// wins, and a row that is both a chain's primary and a chain's secondary
// with the same earlier line repeats that line's pair reversed.
func resolve(cands []planCand) []planVerdict {
	slices.SortFunc(cands, func(a, b planCand) int {
		return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.code, b.code), cmp.Compare(a.other, b.other))
	})
	var out []planVerdict
	for start := 0; start < len(cands); {
		end := start
		for end < len(cands) && cands[end].line == cands[start].line {
			end++
		}
		best := pickVerdict(cands[start:end])
		out = append(out, planVerdict{line: best.line, other: best.other, code: best.code})
		start = end
	}
	return out
}

// pickVerdict returns the reason that decides a line's verdict among
// those found for it (group, not empty): a repeat, the earliest one, when
// there is one; otherwise the conflict with the earliest other line (the
// lowest code among equals), turned into planReversed when the row is both
// a chain's primary and a chain's secondary with that same line.
func pickVerdict(group []planCand) planCand {
	best := group[0]
	dup := best.code == planDuplicate
	for _, c := range group[1:] {
		switch {
		case (c.code == planDuplicate) != dup:
			if c.code == planDuplicate {
				best, dup = c, true
			}
		case c.other < best.other || c.other == best.other && c.code < best.code:
			best = c
		}
	}
	if dup {
		return best
	}
	var asPrimary, asSecondary uint32
	for _, c := range group {
		switch c.code {
		case planSecondaryIsPrimary:
			asPrimary = c.other
		case planPrimaryIsSecondary:
			asSecondary = c.other
		}
	}
	if asPrimary != 0 && asPrimary == asSecondary && asPrimary == best.other {
		best.code = planReversed
	}
	return best
}

// mergeVerdicts merges two lists sorted by line, with no line in both.
func mergeVerdicts(a, b []planVerdict) []planVerdict {
	if len(b) == 0 {
		return a
	}
	out := make([]planVerdict, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].line < b[0].line {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func (p *Plan) retainedBytes() int {
	n := cap(p.verdicts) * int(unsafe.Sizeof(planVerdict{}))
	for _, v := range p.verdicts {
		n += len(v.msg)
	}
	return n
}

// Rows returns the number of data rows, the unreadable and invalid included.
func (p *Plan) Rows() int { return p.rows }

// Verdict returns why the row starting at line must not be sent, and false
// when it may be sent (or no row starts there). A nil Plan (a source with
// no pre-pass) holds no row back.
func (p *Plan) Verdict(line int) (Verdict, bool) {
	if p == nil || line <= 0 || line > math.MaxUint32 {
		return Verdict{}, false
	}
	i, found := slices.BinarySearchFunc(p.verdicts, uint32(line), func(v planVerdict, l uint32) int { return cmp.Compare(v.line, l) })
	if !found {
		return Verdict{}, false
	}
	return p.verdicts[i].verdict(), true
}

// verdict returns v as a Verdict.
func (v planVerdict) verdict() Verdict {
	other := int(v.other)
	switch v.code {
	case planRowErr:
		return Verdict{Status: StatusInvalid, Err: v.msg}
	case planDuplicate:
		return Verdict{Status: StatusSkipped, Err: fmt.Sprintf("duplicate of line %d", other), Other: other}
	case planSecondaryAgain:
		return invalidf(other, "%s: also given to a different primary on line %d", colSecondary, other)
	case planSecondarySamePair:
		return invalidf(other, "%s: also given to this primary on line %d, with another connection_id", colSecondary, other)
	case planSecondaryIsPrimary:
		return invalidf(other, "%s: is a primary on line %d", colSecondary, other)
	case planPrimaryIsSecondary:
		return invalidf(other, "%s: is a secondary on line %d", colPrimary, other)
	default: // planReversed
		return invalidf(other, "%s: line %d links the same two users the other way round", colSecondary, other)
	}
}

func invalidf(other int, format string, args ...any) Verdict {
	return Verdict{Status: StatusInvalid, Err: fmt.Sprintf(format, args...), Other: other}
}

// Bytes returns the approximate memory the pre-pass used for its index at
// its largest (the records of every valid row while BuildPlan ran, and the
// verdicts it keeps), for reporting.
func (p *Plan) Bytes() int { return p.bytes }
