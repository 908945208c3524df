package engine

// OnePasses is how many fast results the one pass for undecided cells completed.
func OnePasses() int64 { return onePasses.Load() }
