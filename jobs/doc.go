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
// What a crash loses, at each point of a job (the daemon's crash loses nothing committed; a
// machine's, what was not yet on disk):
//   - submission: the job, its budget reservation and its job.submit entry commit in one
//     synchronous transaction, and the entry is signed (the signer's state appended and
//     fsynced) before the answer goes out. The job is queued once the commit is on disk,
//     so it may start while its entry is being signed. Before the commit returns, nothing is kept and
//     the caller got no answer; after it, all of it is on disk. A crash between the commit
//     and the signing leaves the entry unsigned until the next start signs it.
//   - start: the move to running and the job.start entry commit without waiting for the
//     disk; the sandbox gets the job only once they are flushed, and until then the job is
//     shown queued and no long poll is woken. A machine crash before the flush brings the
//     job back queued, never run, its reservation still held; it runs after the restart.
//     A crash after the flush finds it running: recover marks it failed (its budget stays
//     spent, it may have touched the data).
//   - output: the protected output, its digest's job.gate entry, the move to review and the
//     metering commit in one synchronous transaction, signed before anyone is told. Lost
//     before that commit: the output (the job is failed at the restart, budget spent).
//   - signing: the signature leaves only after the signer's state holds it on disk; a
//     checkpoint torn by a crash during its append was never handed out (package audit).
//     A checkpoint covers only entries on disk: the signer's view of the log ends before
//     a start not yet flushed (sqlite.DB.ViewAudit), so a machine crash cannot leave a
//     signed checkpoint beyond the log, and a submission's signing does not wait for the
//     start of its job.
//     The store's copy of a checkpoint commits without waiting: one lost is stored again
//     by the first signing after the restart.
//
// Package jobs never holds an exact result: what reaches it from a kind is protected; and
// it never shows a vendor a production job's timing, metering or failure detail.
package jobs
