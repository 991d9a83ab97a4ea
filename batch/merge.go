package batch

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/linkbatch/linkbatch/linker"
)

// MergePolicy says whether and how a run merges the secondary's metadata
// into the primary's before linking them (a link discards the
// secondary's metadata).
type MergePolicy string

// Merge policies.
const (
	MergeNone          MergePolicy = "none"           // no merge: the secondary's metadata is lost
	MergePrimaryWins   MergePolicy = "primary-wins"   // add the secondary's keys the primary lacks
	MergeSecondaryWins MergePolicy = "secondary-wins" // also overwrite the primary's keys the secondary holds too
)

// ParseMergePolicy returns the policy named s ("" is MergeNone).
func ParseMergePolicy(s string) (MergePolicy, error) {
	switch p := MergePolicy(s); p {
	case "":
		return MergeNone, nil
	case MergeNone, MergePrimaryWins, MergeSecondaryWins:
		return p, nil
	}
	return "", fmt.Errorf("merge policy must be none, primary-wins or secondary-wins, not %q", s)
}

// mergePlan is what a merge changes on the primary: the patch to send
// (nil maps when a metadata object does not change), and the keys added
// and in conflict, as "user_metadata.KEY" and "app_metadata.KEY", sorted.
type mergePlan struct {
	patch     linker.UserPatch
	added     []string
	conflicts []string
}

// empty reports whether the merge changes nothing.
func (m mergePlan) empty() bool { return m.patch.UserMetadata == nil && m.patch.AppMetadata == nil }

// note describes the merge for a results row of a dry run; "" when the
// secondary has no metadata to merge.
func (m mergePlan) note(policy MergePolicy) string {
	if len(m.added) == 0 && len(m.conflicts) == 0 {
		return ""
	}
	var parts []string
	if len(m.added) > 0 {
		parts = append(parts, "adds "+strings.Join(m.added, " "))
	}
	if len(m.conflicts) > 0 {
		winner := "primary"
		if policy == MergeSecondaryWins {
			winner = "secondary"
		}
		parts = append(parts, fmt.Sprintf("conflicts (%s wins) %s", winner, strings.Join(m.conflicts, " ")))
	}
	return "note: metadata merge " + strings.Join(parts, "; ")
}

// planMerge merges the secondary's metadata into the primary's at the
// root level, as PATCH /api/v2/users/{id} does: a key only the secondary
// holds is added; a key both hold with different values is a conflict,
// which the secondary wins only under MergeSecondaryWins. A key whose
// value is null in the secondary is passed over (sent, it would delete the
// primary's key). The patch holds only what changes, and never an empty
// object.
func planMerge(policy MergePolicy, primary, secondary *linker.Profile) mergePlan {
	var m mergePlan
	if secondary == nil {
		return m
	}
	one := func(name string, p, s map[string]any) map[string]any {
		var patch map[string]any
		for _, k := range slices.Sorted(maps.Keys(s)) {
			v := s[k]
			if v == nil {
				continue
			}
			pv, held := p[k]
			switch {
			case !held:
				m.added = append(m.added, name+"."+k)
			case reflect.DeepEqual(pv, v):
				continue
			default:
				m.conflicts = append(m.conflicts, name+"."+k)
				if policy != MergeSecondaryWins {
					continue
				}
			}
			if patch == nil {
				patch = map[string]any{}
			}
			patch[k] = v
		}
		return patch
	}
	m.patch.UserMetadata = one("user_metadata", primary.UserMetadata, secondary.UserMetadata)
	m.patch.AppMetadata = one("app_metadata", primary.AppMetadata, secondary.AppMetadata)
	return m
}

// restorePatch returns the patch that brings cur's metadata back to
// backed's: each key of backed whose value differs (or is missing) is set
// to it, and each key of cur that backed lacks and that added may have
// put there (a key of the merged-in secondary) is removed (set to null).
// Keys that neither backed nor added hold are left: linkbatch did not
// write them. Maps of the patch are nil when nothing changes.
func restorePatch(backed, added, cur *linker.Profile) linker.UserPatch {
	one := func(b, a, c map[string]any) map[string]any {
		var patch map[string]any
		set := func(k string, v any) {
			if patch == nil {
				patch = map[string]any{}
			}
			patch[k] = v
		}
		for _, k := range slices.Sorted(maps.Keys(b)) {
			if cv, ok := c[k]; !ok || !reflect.DeepEqual(cv, b[k]) {
				set(k, b[k])
			}
		}
		for _, k := range slices.Sorted(maps.Keys(c)) {
			if _, kept := b[k]; kept {
				continue
			}
			if _, merged := a[k]; merged {
				set(k, nil)
			}
		}
		return patch
	}
	var a linker.Profile
	if added != nil {
		a = *added
	}
	return linker.UserPatch{
		UserMetadata: one(backed.UserMetadata, a.UserMetadata, cur.UserMetadata),
		AppMetadata:  one(backed.AppMetadata, a.AppMetadata, cur.AppMetadata),
	}
}

// Merges reports whether c merges metadata (Merge is set and not
// MergeNone).
func (c Config) Merges() bool { return c.Merge != "" && c.Merge != MergeNone }
