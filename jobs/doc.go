// Package jobs runs jobs: the job record and its state machine (Move), the submit path (a
// kind plans the request, the ledger reserves what it spends in the transaction that stores
// and queues the job, the audit log records it), a scheduler that is fair between tenants,
// the run path (the job's kind runs it, its protected output goes to the review queue),
// cancellation, long-polled waits, dev runs on the twins, and recovery after a crash.
//
// It knows the kinds of job only through the Kind interface: each kind (package kinds/...)
// is registered once, by the daemon's wiring, and nothing here names one.
//
// Invariants: a job is either queued and paid for, or refused and nothing is spent; only a
// job that never ran is refunded; a job moves only along the state machine's arrows, with one exception: a vendor that
// cancels a job whose end it cannot see yet (View) cancels it from the status it really is in
// (failed, rejected, released), as one in review would be; after a
// crash no job stays running and no queued job is lost; a job canceled while it runs keeps
// no output. Every answer about a job goes through Service.View: a production job's metering
// is the operator's only, and its vendor sees it start and end only at release quanta
// (view.go); a failure on data reads only its class (launch.ForVendor).
//
// Package jobs never holds an exact result: what reaches it from a kind is protected; and
// it never shows a vendor a production job's timing, metering or failure detail.
package jobs
