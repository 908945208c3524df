package engine

// OnePasses is how many fast results the one pass for undecided cells completed.
func OnePasses() int64 { return onePasses.Load() }

// Restricts is how many restricted passes (narrow, dominance, the one pass) ran.
func Restricts() int64 { return restricts.Load() }
