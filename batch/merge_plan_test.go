package batch

import (
	"reflect"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
)

func TestPlanMerge(t *testing.T) {
	type md = map[string]any
	tests := []struct {
		name           string
		policy         MergePolicy
		primary, sec   md // user_metadata
		wantPatch      md
		added, clashes []string
	}{
		{name: "secondary without metadata", policy: MergePrimaryWins, primary: md{"a": "1"}},
		{name: "secondary with an empty object", policy: MergeSecondaryWins, primary: md{"a": "1"}, sec: md{}},
		{name: "primary without metadata", policy: MergePrimaryWins, sec: md{"a": "1"}, wantPatch: md{"a": "1"}, added: []string{"user_metadata.a"}},
		{name: "same values", policy: MergeSecondaryWins, primary: md{"a": md{"x": "1"}}, sec: md{"a": md{"x": "1"}}},
		{name: "primary wins", policy: MergePrimaryWins, primary: md{"a": "1"}, sec: md{"a": "2", "b": "3"},
			wantPatch: md{"b": "3"}, added: []string{"user_metadata.b"}, clashes: []string{"user_metadata.a"}},
		{name: "primary wins, conflict only", policy: MergePrimaryWins, primary: md{"a": "1"}, sec: md{"a": "2"},
			clashes: []string{"user_metadata.a"}},
		{name: "secondary wins", policy: MergeSecondaryWins, primary: md{"a": "1"}, sec: md{"a": "2", "b": "3"},
			wantPatch: md{"a": "2", "b": "3"}, added: []string{"user_metadata.b"}, clashes: []string{"user_metadata.a"}},
		{name: "a null in the secondary deletes nothing", policy: MergeSecondaryWins, primary: md{"a": "1"}, sec: md{"a": nil, "b": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &linker.Profile{UserMetadata: tt.primary}
			s := &linker.Profile{UserMetadata: tt.sec}
			m := planMerge(tt.policy, p, s)
			if !reflect.DeepEqual(m.patch.UserMetadata, map[string]any(tt.wantPatch)) {
				t.Errorf("patch %#v, want %#v", m.patch.UserMetadata, tt.wantPatch)
			}
			if m.patch.UserMetadata != nil && len(m.patch.UserMetadata) == 0 {
				t.Error("an empty user_metadata patch")
			}
			if m.patch.AppMetadata != nil {
				t.Errorf("app_metadata patch %#v, want none", m.patch.AppMetadata)
			}
			if !reflect.DeepEqual(m.added, tt.added) || !reflect.DeepEqual(m.conflicts, tt.clashes) {
				t.Errorf("added %v conflicts %v, want %v %v", m.added, m.conflicts, tt.added, tt.clashes)
			}
		})
	}
}

func TestRestorePatch(t *testing.T) {
	type md = map[string]any
	tests := []struct {
		name               string
		backed, added, cur md
		want               md
	}{
		{name: "unchanged", backed: md{"a": "1"}, added: md{"b": "2"}, cur: md{"a": "1"}},
		{name: "nothing backed, nothing added", cur: md{"z": "9"}},
		{name: "added key removed", backed: md{"a": "1"}, added: md{"b": "2"}, cur: md{"a": "1", "b": "2"}, want: md{"b": nil}},
		{name: "overwritten key restored", backed: md{"a": "1"}, added: md{"a": "2"}, cur: md{"a": "2"}, want: md{"a": "1"}},
		{name: "a key of someone else kept", backed: md{"a": "1"}, cur: md{"a": "1", "z": "9"}},
		{name: "recreated user", backed: md{"a": "1", "n": md{"x": "y"}}, want: md{"a": "1", "n": md{"x": "y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := restorePatch(&linker.Profile{AppMetadata: tt.backed}, &linker.Profile{AppMetadata: tt.added}, &linker.Profile{AppMetadata: tt.cur})
			if !reflect.DeepEqual(p.AppMetadata, map[string]any(tt.want)) {
				t.Errorf("patch %#v, want %#v", p.AppMetadata, tt.want)
			}
			if p.UserMetadata != nil {
				t.Errorf("user_metadata patch %#v, want none", p.UserMetadata)
			}
		})
	}
}
