package batch

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"unsafe"
)

// conflictIndex decides the verdicts of BuildPlan row by row, in one pass:
// a row's verdict depends only on the rows before it (see BuildPlan), so
// each row is checked against what the index holds of the earlier rows,
// then added to it. Fed the rows of an input in order, it gives every row
// the verdict BuildPlan's Plan gives it.
//
// It keeps, for each user, the first valid row where it appears (12
// bytes, in open-addressing tables mapped outside the heap on Unix), and
// for each valid row its line and its primary (8 bytes); the first row of
// a user in its other role (a primary that is also a secondary), rows
// whose secondary was given before, link_with rows and connection ids,
// which a clean input has few of, are kept in small side tables. Users are compared by 64-bit hashes (hash/maphash), as
// BuildPlan compares them, with the same consequence: two ids hashing
// equally could only make rows be refused that need not be.
//
// A conflictIndex is not safe for concurrent use; free releases its
// memory.
type conflictIndex struct {
	seed  maphash.Seed // of the keys (rowKeys)
	users userTable
	// rows holds, for each valid row by ordinal (1-based, rows[0] unused),
	// its line and the ordinal of the first row with its primary.
	rows indexRows
	// conns holds the connection_id hash of the valid rows that have one,
	// by ordinal, in order.
	conns []indexConn
	// again holds, with its first line, each exact row (primary,
	// secondary, connection_id) whose secondary an earlier row gave with
	// another primary or connection_id, and each link_with row.
	again map[exactRow]uint32
	n     uint32 // valid rows so far
}

type indexConn struct {
	ord  uint32
	hash uint64
}

// exactRow identifies a row for finding repeats: its primary, and either
// its secondary and connection_id or its link_with token.
type exactRow struct {
	primary, secondary, conn uint64
	linkWith                 bool
}

func newConflictIndex() *conflictIndex {
	x := &conflictIndex{seed: maphash.MakeSeed()}
	x.users.init()
	x.rows.add(indexRow{}) // ordinal 0 is no row
	return x
}

// free releases the memory the index maps; x must not be used afterwards.
func (x *conflictIndex) free() {
	x.users.free()
	x.rows.free()
	x.conns, x.again = nil, nil
}

// bytes returns the most memory the index held, for reporting: the users'
// tables at their largest (while one grew), the rows, and the side tables.
func (x *conflictIndex) bytes() int {
	n := x.users.peak + x.rows.bytes() + cap(x.conns)*int(unsafe.Sizeof(indexConn{}))
	// A map entry: its key and value, and about as much again in the
	// map's tables.
	n += len(x.again)*2*int(unsafe.Sizeof(exactRow{})+4) + len(x.users.other)*2*12
	return n
}

// reserve makes room for users users without growing, but for a few:
// a hint, which the index may exceed.
func (x *conflictIndex) reserve(users int) { x.users.reserve(users) }

// errIndexFull is returned for an input with more lines (2³²-1) or valid
// rows (2³¹-1) than the index can number.
var errIndexFull = errors.New("input too long for the plan")

// add returns the verdict of r, which must be the next row of the input,
// and adds it to the index; held is false for a row that may be sent.
func (x *conflictIndex) add(r passRow) (v planVerdict, held bool, err error) {
	if r.line > math.MaxUint32 {
		return planVerdict{}, false, fmt.Errorf("line %d: %w", r.line, errIndexFull)
	}
	line := uint32(r.line)
	if r.bad {
		return planVerdict{line: line, code: planRowErr, msg: r.err}, true, nil
	}
	if x.n == secondaryFirst-1 {
		return planVerdict{}, false, fmt.Errorf("line %d: %w", r.line, errIndexFull)
	}
	x.n++
	ord := x.n
	k := r.keys
	// As a primary: is it a secondary on an earlier line?
	firstPrim, primSec := x.users.first(k.primary, ord, 0)
	if firstPrim == 0 {
		firstPrim = ord
	}
	x.rows.add(indexRow{line: line, primary: firstPrim})
	var c candidates
	if primSec != 0 {
		c.add(planPrimaryIsSecondary, x.rows.line(primSec))
	}
	if r.linkWith {
		key := exactRow{primary: k.primary, secondary: k.secondary, linkWith: true}
		if other, ok := x.repeat(key, line); ok {
			return planVerdict{line: line, other: other, code: planDuplicate}, true, nil
		}
		return c.verdict(line)
	}
	if k.conn != 0 {
		x.conns = append(x.conns, indexConn{ord: ord, hash: k.conn})
	}
	secPrim, secSec := x.users.first(k.secondary, 0, ord)
	if secSec != 0 {
		// The secondary was given before: on its first row, by the same
		// primary or another; or this row repeats a later one.
		first := x.rows.at(secSec)
		switch {
		case first.primary == firstPrim && x.conn(secSec) == k.conn:
			return planVerdict{line: line, other: first.line, code: planDuplicate}, true, nil
		case first.primary == firstPrim:
			c.add(planSecondarySamePair, first.line)
		default:
			c.add(planSecondaryAgain, first.line)
		}
		if other, ok := x.repeat(exactRow{primary: k.primary, secondary: k.secondary, conn: k.conn}, line); ok {
			return planVerdict{line: line, other: other, code: planDuplicate}, true, nil
		}
	}
	if secPrim != 0 && secPrim < ord {
		c.add(planSecondaryIsPrimary, x.rows.line(secPrim))
	}
	return c.verdict(line)
}

// touch reads the slots where the searches for k's users start, so that
// add finds them in the cache: touching the slots of many rows before
// adding any lets their cache misses overlap. It returns the slots' keys,
// for the caller to fold into a sum that the compiler cannot drop.
func (x *conflictIndex) touch(k rowKeys) uint64 {
	return x.users.touch(k.primary) + x.users.touch(k.secondary)
}

// rowKeys are the hashes of a row's ids that a conflictIndex compares: its
// primary, and its secondary (provider|user_id, however it was written)
// and connection_id (0 for none), or its link_with token in secondary.
type rowKeys struct {
	primary, secondary, conn uint64
}

// keyer hashes rows for a conflictIndex (conflictIndex.keyer returns one).
// It is not safe for concurrent use; it may be used in another goroutine
// than the index.
type keyer struct {
	seed maphash.Seed
	h    maphash.Hash // for ids in parts (secondary_provider)
}

func (x *conflictIndex) keyer() *keyer {
	k := &keyer{seed: x.seed}
	k.h.SetSeed(x.seed)
	return k
}

// passRow is what a one-pass run keeps of a row on its way from its
// reader to its index and writer.
type passRow struct {
	line                         int
	primary, secondary, provider string // as read
	bad                          bool   // the row could not be read or is invalid
	err                          string // why, when bad
	linkWith                     bool   // a link_with row
	keys                         rowKeys
	// status and msg are its result's, once the index decided its
	// verdict; status is "" for a row of Runner.Done, which gets none.
	status Status
	msg    string
}

// row returns what a one-pass run keeps of a checked row.
func (k *keyer) row(row *Row) passRow {
	r := passRow{line: row.Line, primary: row.Primary, secondary: row.Secondary, provider: row.SecondaryProvider}
	if row.Err != nil {
		r.bad, r.err = true, row.Err.Error()
		return r
	}
	r.linkWith = row.req.LinkWith != ""
	r.keys = k.keys(row)
	return r
}

// keys returns the keys of a checked valid row.
func (k *keyer) keys(row *Row) rowKeys {
	out := rowKeys{primary: maphash.String(k.seed, row.req.PrimaryID)}
	switch {
	case row.req.LinkWith != "":
		out.secondary = maphash.String(k.seed, row.req.LinkWith)
		return out
	case row.SecondaryProvider == "":
		out.secondary = maphash.String(k.seed, row.Secondary)
	default:
		k.h.Reset()
		_, _ = k.h.WriteString(row.req.Provider) // never fails
		_, _ = k.h.WriteString("|")
		_, _ = k.h.WriteString(row.req.UserID)
		out.secondary = k.h.Sum64()
	}
	if row.req.ConnectionID != "" {
		out.conn = maphash.String(k.seed, row.req.ConnectionID)
	}
	return out
}

// repeat returns the first line of the exact row key, or records line as
// its first.
func (x *conflictIndex) repeat(key exactRow, line uint32) (uint32, bool) {
	if other, ok := x.again[key]; ok {
		return other, true
	}
	if x.again == nil {
		x.again = map[exactRow]uint32{}
	}
	x.again[key] = line
	return 0, false
}

// conn returns the connection_id hash of the valid row ord, 0 if it has
// none.
func (x *conflictIndex) conn(ord uint32) uint64 {
	i, ok := slices.BinarySearchFunc(x.conns, ord, func(c indexConn, ord uint32) int { return int(c.ord) - int(ord) })
	if !ok {
		return 0
	}
	return x.conns[i].hash
}

// candidates are the conflicts of one row with earlier rows (no
// repeat), at most one of each code.
type candidates struct {
	list [3]planCand
	n    int
}

func (c *candidates) add(code uint8, other uint32) {
	c.list[c.n] = planCand{other: other, code: code}
	c.n++
}

// verdict resolves the candidates as resolve does (see pickVerdict).
func (c *candidates) verdict(line uint32) (planVerdict, bool, error) {
	if c.n == 0 {
		return planVerdict{}, false, nil
	}
	best := pickVerdict(c.list[:c.n])
	return planVerdict{line: line, other: best.other, code: best.code}, true, nil
}

// indexRow is what the index keeps of a valid row.
type indexRow struct {
	line    uint32
	primary uint32 // ordinal of the first row with this row's primary
}

// indexRowsChunk is the number of rows in one chunk of indexRows: a huge
// page (2 MiB).
const indexRowsChunk = 1 << 18

// indexRows holds the rows in chunks, so that growing never copies them;
// the chunks are mapped outside the heap where the system can.
type indexRows struct {
	chunks [][]indexRow
	mapped [][]byte
	n      int
}

func (rs *indexRows) add(r indexRow) {
	if rs.n%indexRowsChunk == 0 {
		rs.grow()
	}
	rs.chunks[rs.n/indexRowsChunk][rs.n%indexRowsChunk] = r
	rs.n++
}

func (rs *indexRows) grow() {
	size := indexRowsChunk * int(unsafe.Sizeof(indexRow{}))
	if b, mapping := mapBytes(size); b != nil {
		rs.mapped = append(rs.mapped, mapping)
		rs.chunks = append(rs.chunks, unsafe.Slice((*indexRow)(unsafe.Pointer(unsafe.SliceData(b))), indexRowsChunk))
		return
	}
	rs.chunks = append(rs.chunks, make([]indexRow, indexRowsChunk))
}

func (rs *indexRows) at(ord uint32) indexRow {
	return rs.chunks[ord/indexRowsChunk][ord%indexRowsChunk]
}

func (rs *indexRows) line(ord uint32) uint32 { return rs.at(ord).line }

// bytes returns the memory the rows take: as many as were added, the last
// chunk's pages being taken as they are written.
func (rs *indexRows) bytes() int { return rs.n * int(unsafe.Sizeof(indexRow{})) }

func (rs *indexRows) free() {
	for _, b := range rs.mapped {
		unmapBytes(b)
	}
	*rs = indexRows{}
}

// userSlot is one user of a userTable: its key, low half first, and the
// ordinal of the first valid row where it appears, with secondaryFirst
// set when it appears there as a secondary. A slot whose ordinal is 0 is
// empty. 12 bytes: a user is nearly always a primary only or a secondary
// only; the first row of a user in its other role is kept aside
// (userTable.other).
type userSlot [3]uint32

// secondaryFirst marks a userSlot whose first row has the user as its
// secondary; ordinals are below it.
const secondaryFirst = 1 << 31

// userShards is the number of tables a userTable spreads its users over
// (by the top bits of their keys): a table grows alone, so growing holds
// both copies of only an eighth of the users.
const (
	userShardBits = 3
	userShards    = 1 << userShardBits
)

// userTable maps a user's key to its first rows as a primary and as a
// secondary: open addressing, linear probing, grown by half once four
// fifths full.
type userTable struct {
	shards     [userShards]userShard
	other      map[uint64]uint32 // the first row in its other role of a user that has one
	size, peak int               // bytes of slots held now, and at most
}

type userShard struct {
	slots  []userSlot
	n      int    // slots in use
	limit  int    // grow before n reaches it
	mapped []byte // the mapping of slots, if mapped
}

// userShardMin is the slots of a shard at first; from userShardMapped
// bytes on, its slots are mapped outside the heap.
const (
	userShardMin    = 256
	userShardMapped = 256 << 10
)

func (t *userTable) init() {
	for i := range t.shards {
		t.shards[i].alloc(t, userShardMin)
	}
	t.other = map[uint64]uint32{}
}

func (t *userTable) free() {
	for i := range t.shards {
		s := &t.shards[i]
		if s.mapped != nil {
			unmapBytes(s.mapped)
		}
		*s = userShard{}
	}
	t.size, t.other = 0, nil
}

// touch reads the slot where key's search starts (see conflictIndex.touch).
func (t *userTable) touch(key uint64) uint64 {
	slots := t.shards[key>>(64-userShardBits)].slots
	hi, _ := bits.Mul64(key<<userShardBits, uint64(len(slots)))
	return uint64(slots[hi][2])
}

// first returns the user key's first rows as a primary and as a secondary
// (ordinals, 0 for none) before this call, and records the row given, prim
// or sec (the other is 0), as its first in that role if it has none yet.
// Ordinals must be below secondaryFirst.
func (t *userTable) first(key uint64, prim, sec uint32) (uint32, uint32) {
	s := &t.shards[key>>(64-userShardBits)]
	if s.n >= s.limit {
		s.grow(t)
	}
	slots := s.slots
	lo, hi := uint32(key), uint32(key>>32)
	home, _ := bits.Mul64(key<<userShardBits, uint64(len(slots)))
	for i := int(home); ; {
		sl := &slots[i]
		switch {
		case sl[2] == 0:
			v := prim
			if v == 0 {
				v = sec | secondaryFirst
			}
			*sl = userSlot{lo, hi, v}
			s.n++
			return 0, 0
		case sl[0] == lo && sl[1] == hi:
			return t.found(key, sl[2], prim, sec)
		}
		if i++; i == len(slots) {
			i = 0
		}
	}
}

// found is first for a user already in the table, whose slot holds v.
func (t *userTable) found(key uint64, v, prim, sec uint32) (p, q uint32) {
	// add is the row given in the role other than the slot's.
	ord, other, add := v&^secondaryFirst, t.other[key], sec
	if p, q = ord, other; v&secondaryFirst != 0 {
		p, q, add = other, ord, prim
	}
	if other == 0 && add != 0 {
		t.other[key] = add
	}
	return p, q
}

// alloc gives s at least n empty slots of t, dropping (not freeing)
// those it had. A table of a huge page or more is mapped (mapBytes), and
// fills its mapping.
func (s *userShard) alloc(t *userTable, n int) {
	s.slots, s.mapped = nil, nil
	slot := int(unsafe.Sizeof(userSlot{}))
	if n*slot >= userShardMapped {
		if b, mapping := mapBytes(n * slot); b != nil && len(b)/slot <= 1<<31 {
			s.mapped = mapping
			s.slots = unsafe.Slice((*userSlot)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/slot)
		}
	}
	if s.slots == nil {
		s.slots = make([]userSlot, n)
	}
	t.size += len(s.slots) * slot
	t.peak = max(t.peak, t.size)
	s.n, s.limit = 0, len(s.slots)*4/5
}

// reserve grows each shard whose share of users users would make it grow.
func (t *userTable) reserve(users int) {
	per := users/userShards + 1
	for i := range t.shards {
		if s := &t.shards[i]; s.limit < per {
			s.growTo(t, per*5/4+1)
		}
	}
}

// grow moves the slots of s into a table half as large again.
func (s *userShard) grow(t *userTable) { s.growTo(t, len(s.slots)+len(s.slots)/2) }

// growTo moves the slots of s into a table of at least n slots.
func (s *userShard) growTo(t *userTable, n int) {
	old, mapped := s.slots, s.mapped
	s.alloc(t, n)
	for _, sl := range old {
		if sl[2] == 0 {
			continue
		}
		home, _ := bits.Mul64((uint64(sl[0])|uint64(sl[1])<<32)<<userShardBits, uint64(len(s.slots)))
		i := int(home)
		for s.slots[i][2] != 0 {
			if i++; i == len(s.slots) {
				i = 0
			}
		}
		s.slots[i] = sl
		s.n++
	}
	if mapped != nil {
		unmapBytes(mapped)
	}
	t.size -= len(old) * int(unsafe.Sizeof(userSlot{}))
}
