package sandbox

import "testing"

// TestUIDsUniqueAcrossRuntimes: a container's root is a host uid no other live container
// has, also one of another Runtime: of this process (two runtimes on other state
// directories) or of another process (simulated by starting the sequence over, as a
// restarted or second daemon does while the first one's containers live). Two jobs sharing
// a host uid could reach each other's files on the host, such as their spill areas.
func TestUIDsUniqueAcrossRuntimes(t *testing.T) {
	r1, r2 := newRuntime(t), newRuntime(t)
	if !r1.UserNamespace() {
		t.Skip("containers share uid 0 without user namespaces")
	}
	seen := map[int64]string{}
	take := func(r *Runtime, who string) {
		t.Helper()
		u, err := r.allocUID()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(u.release)
		if o, ok := seen[u.id]; ok {
			t.Errorf("host uid %d given to a container of %s while one of %s lives", u.id, who, o)
		}
		seen[u.id] = who
	}
	for i := 0; i < 3; i++ {
		take(r1, "the first runtime")
		take(r2, "the second runtime")
	}
	uidSeq.Store(0) // another process: its sequence starts over
	for i := 0; i < 3; i++ {
		take(r2, "another process")
	}
}
