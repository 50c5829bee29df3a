package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
)

// Group commit.
//
// The hot writes (PutRegistration, DeleteRegistration, Enqueue, Ack,
// MarkBatch) are not run by their callers. Callers queue them, and the one
// writer goroutine runs whatever has queued up since its last commit in a
// single transaction. The cost of a commit (WAL frame writes, shm locking,
// and the fsync under FULL) is then shared by every call in the batch, and
// a page that several calls change is written once. A caller waits until its
// batch has committed. So "returned nil" still means "committed", with the
// guarantees the package documentation gives for the Synchronous mode.

// maxBatch bounds the calls in one transaction. That bounds how long the
// transaction keeps the write lock and how long a call waits for a batch
// it missed. It is also the queue's capacity: a caller that finds the
// queue full waits, honouring its context.
const maxBatch = 128

// writeReq is one queued call.
type writeReq struct {
	ctx context.Context
	// run performs the call's statements in tx. An *itemError means that
	// only this call failed and the transaction is intact. Any other error
	// means the transaction may be damaged (I/O error, disk full, ...).
	run  func(tx *batchTx) error
	done chan error // buffered: the writer never blocks on a caller
}

// itemError marks a failure that concerns one call only. SQLite aborts a
// statement that violates a constraint by undoing just that statement,
// and the rest of the transaction stays intact. A statement that matched
// no row changed nothing. In both cases the other calls of the batch can
// still commit, so no savepoint per call is needed.
type itemError struct{ err error }

func (e *itemError) Error() string { return e.err.Error() }
func (e *itemError) Unwrap() error { return e.err }

// batchTx is a batch's transaction. It binds the prepared statements to
// the transaction on first use, once per batch rather than once per call.
type batchTx struct {
	s     *Store
	tx    *sql.Tx
	stmts [firstRead]*sql.Stmt
}

func (b *batchTx) stmt(id stmtID) *sql.Stmt {
	if b.stmts[id] == nil {
		// The transaction runs on the writer's only connection, where the
		// statement is already prepared, so this only binds it.
		b.stmts[id] = b.tx.Stmt(b.s.stmts[id])
	}
	return b.stmts[id]
}

// write queues run for the writer and returns its outcome, wrapped for op.
//
// ctx is honoured until the writer takes the call into a transaction: a
// call cancelled before that is not run. Once it is running, the call
// waits for the commit (at most one batch) and reports what really
// happened. Giving up at that point could report failure for a write that
// then commits.
func (s *Store) write(ctx context.Context, op string, run func(tx *batchTx) error) error {
	if err := ctx.Err(); err != nil {
		return wrap(op, err)
	}
	req := &writeReq{ctx: ctx, run: run, done: make(chan error, 1)}
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return wrap(op, ctx.Err())
	case <-s.closing:
		return fmt.Errorf("sqlite: %s: store is closed", op)
	}
	select {
	case err := <-req.done:
		return wrap(op, err)
	case <-s.writerDone:
		// The writer has answered every call it took before stopping. A
		// call that got into the queue after that was never run.
		select {
		case err := <-req.done:
			return wrap(op, err)
		default:
			return fmt.Errorf("sqlite: %s: store is closed", op)
		}
	}
}

// writeLoop is the writer goroutine. It runs until Close, then runs what
// is still queued and stops.
func (s *Store) writeLoop() {
	defer close(s.writerDone)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.writes:
		case <-s.closing:
			// Run what was queued before Close, then stop.
			select {
			case first = <-s.writes:
			default:
				return
			}
		}
		batch = append(batch[:0], first)
		// Let the callers that the last commit woke, and any others ready
		// to run, queue their next write before the batch is closed. This
		// costs little when no one else is runnable. With a few busy
		// callers it turns batches of one into batches of several.
		runtime.Gosched()
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.runBatch(batch)
		clear(batch) // drop references to finished calls
	}
}

// runBatch runs the calls in one transaction and answers each call.
func (s *Store) runBatch(batch []*writeReq) {
	// Calls whose callers gave up while queued are answered, not run.
	live := make([]*writeReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// The transaction does not use any caller's context. modernc.org/sqlite
	// interrupts the connection when a statement's context is cancelled, and
	// an interrupt can roll back the whole transaction, failing everyone.
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		// Beginning does not depend on the calls; running them one by one
		// would only wait out the busy timeout once per call.
		for _, r := range live {
			r.done <- err
		}
		return
	}
	bt := &batchTx{s: s, tx: tx}
	errs := make([]error, len(live))
	for i, r := range live {
		err := r.run(bt)
		var ie *itemError
		switch {
		case err == nil:
		case errors.As(err, &ie):
			errs[i] = ie.err
		default:
			_ = tx.Rollback() // the transaction may be damaged
			s.runEach(live)
			return
		}
	}
	if err := tx.Commit(); err != nil {
		// Nothing of the batch is committed. Retrying each call on its own
		// gives every caller the outcome of its own transaction.
		s.endFailedCommit(ctx)
		s.runEach(live)
		return
	}
	for i, r := range live {
		r.done <- errs[i]
	}
}

// runEach runs every call in a transaction of its own, the fallback when a
// batch fails for a reason that may belong to one of its calls: each caller
// then gets exactly the outcome it would have had without batching.
func (s *Store) runEach(reqs []*writeReq) {
	ctx := context.Background() // see runBatch
	for _, r := range reqs {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			r.done <- err
			continue
		}
		if err := r.run(&batchTx{s: s, tx: tx}); err != nil {
			_ = tx.Rollback() // the call's error is the one to report
			var ie *itemError
			if errors.As(err, &ie) {
				err = ie.err
			}
			r.done <- err
			continue
		}
		err = tx.Commit()
		if err != nil {
			s.endFailedCommit(ctx)
		}
		r.done <- err
	}
}

// endFailedCommit rolls back what a failed COMMIT may have left open.
// SQLite can keep the transaction open after some COMMIT failures, and
// database/sql would then hand the writer's only connection back still
// inside it, so that every later BEGIN failed.
func (s *Store) endFailedCommit(ctx context.Context) {
	// "no transaction is active" is the usual answer and means all is well.
	_, _ = s.w.ExecContext(ctx, "ROLLBACK")
}
