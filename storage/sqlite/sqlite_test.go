package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/storage/storetest"
)

func openTest(t *testing.T, dir string, sync string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dir, Options{Synchronous: sync})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		t.Run(sync, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storage.Store { return openTest(t, t.TempDir(), sync) })
		})
	}
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) storage.Store { return openTest(t, dir, "") })
}

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := openTest(t, dir, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Errorf("database file: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		opts Options
	}{
		{"dir is a file", file, Options{}},
		{"dir below a file", filepath.Join(file, "sub"), Options{}},
		{"bad synchronous", t.TempDir(), Options{Synchronous: "OFF"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.dir, tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestOpenNotADatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("garbage ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open of a file that is not a database succeeded")
	}
}

func TestSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, "")
	var v int
	if err := s.r.QueryRowContext(t.Context(), `SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != len(migrations()) {
		t.Errorf("schema version %d, want %d", v, len(migrations()))
	}
	// A database from a newer server is refused, not misread.
	if _, err := s.w.ExecContext(t.Context(), `UPDATE schema_version SET version = ?`, v+1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestMigrateFromVersion2 upgrades a database that a server of schema
// version 2 left behind, with rows in the tables that migration 3 changes
// written as that server wrote them, and checks that every record is kept
// and that the new columns and tables work on it.
func TestMigrateFromVersion2(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if from, to, err := migrateTo(ctx, db, migrations()[:2]); err != nil || from != 0 || to != 2 {
		t.Fatalf("migrating a new database to version 2: %d -> %d, %v", from, to, err)
	}
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	reg := lwm2m.Registration{ID: "reg-1", Organisation: "org", Endpoint: "dev-1", Lifetime: 60, Version: "1.1",
		Binding: "U", RootPath: "/", Objects: []lwm2m.LinkedObject{{Path: lwm2m.InstancePath(3, 0)}},
		Address: "192.0.2.1:5683", Transport: "udp", RegisteredAt: at, LastUpdate: at, ExpiresAt: at.Add(time.Hour)}
	plain := storage.Subscription{ID: "sub-1", OrganisationID: "org", Type: "ClientConnected", URL: "https://x/hook", BaseURL: "https://ds", CreatedAt: at}
	// Version 2 never wrote compatId. The migration still fills the new
	// column from any document that has one, so that the two agree.
	compat := storage.Subscription{ID: "sub-2", OrganisationID: "org", Type: "ClientConnected", URL: "https://y/hook", BaseURL: "https://ds",
		Headers: map[string]string{"Authorization": "Basic eDp5"}, CompatID: "m2m-1", CreatedAt: at.Add(time.Second)}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	doc := func(v any) string {
		t.Helper()
		d, err := encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	exec(`INSERT INTO registrations (id, organisation, endpoint, expires_at, doc) VALUES (?, ?, ?, ?, ?)`,
		reg.ID, reg.Organisation, reg.Endpoint, nanos(reg.ExpiresAt), doc(reg))
	for _, sub := range []storage.Subscription{plain, compat} {
		exec(`INSERT INTO subscriptions (id, organisation_id, client_id, type, path, created_at, doc, delivered)
			VALUES (?, ?, ?, ?, ?, ?, ?, 7)`, sub.ID, sub.OrganisationID, sub.ClientID, sub.Type, sub.Path, nanos(sub.CreatedAt), doc(sub))
	}
	var old []storage.Notification
	for i := range 3 {
		n := storage.Notification{SubscriptionID: plain.ID, DeliveryID: fmt.Sprint("d", i), Body: []byte(`{"i":` + strconv.Itoa(i) + `}`), CreatedAt: at}
		res, err := db.ExecContext(ctx, `INSERT INTO outbox (subscription_id, delivery_id, created_at, body) VALUES (?, ?, ?, ?)`,
			n.SubscriptionID, n.DeliveryID, textTime(n.CreatedAt), n.Body)
		if err != nil {
			t.Fatal(err)
		}
		if n.Seq, err = res.LastInsertId(); err != nil {
			t.Fatal(err)
		}
		old = append(old, n)
	}
	exec(`INSERT INTO settings (key, value) VALUES ('ca', x'00ff')`)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, dir, "")
	defer s.Close()
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(migrations()) {
		t.Fatalf("schema version after upgrade %d (%v), want %d", v, err, len(migrations()))
	}
	got, err := s.GetRegistration(ctx, reg.ID)
	if err != nil || got.Device != nil || got.Endpoint != reg.Endpoint || !got.ExpiresAt.Equal(reg.ExpiresAt) {
		t.Errorf("registration after upgrade = %+v, %v; want %+v", got, err, reg)
	}
	for _, want := range []storage.Subscription{plain, compat} {
		got, err := s.GetSubscription(ctx, want.ID)
		if err != nil || got.URL != want.URL || got.CompatID != want.CompatID || len(got.Headers) != len(want.Headers) {
			t.Errorf("subscription after upgrade = %+v, %v; want %+v", got, err, want)
		}
		if st, err := s.GetDeliveryStats(ctx, want.ID); err != nil || st.Delivered != 7 {
			t.Errorf("delivery stats of %s after upgrade = %+v, %v; want 7 delivered", want.ID, st, err)
		}
	}
	for _, f := range []string{"*", "m2m-1"} {
		list, err := s.ListSubscriptions(ctx, storage.SubscriptionFilter{CompatID: f})
		if err != nil || len(list) != 1 || list[0].ID != compat.ID {
			t.Errorf("ListSubscriptions(CompatID %q) after upgrade = %v, %v; want [%s]", f, list, err, compat.ID)
		}
	}
	pending, err := s.Pending(ctx, plain.ID, 0)
	if err != nil || len(pending) != len(old) {
		t.Fatalf("Pending after upgrade = %+v, %v; want %d entries", pending, err, len(old))
	}
	for i, n := range pending {
		if n.Seq != old[i].Seq || n.DeliveryID != old[i].DeliveryID || n.BatchID != "" || string(n.Body) != string(old[i].Body) {
			t.Errorf("outbox entry %d after upgrade = %+v, want %+v", i, n, old[i])
		}
	}
	if err := s.MarkBatch(ctx, plain.ID, old[1].Seq, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, plain.ID, old[0].Seq); err != nil {
		t.Fatal(err)
	}
	pending, err = s.Pending(ctx, plain.ID, 0)
	if err != nil || len(pending) != 2 || pending[0].BatchID != "b1" || pending[1].BatchID != "" {
		t.Errorf("Pending after MarkBatch and Ack on the upgraded outbox = %+v, %v", pending, err)
	}
	n := []storage.Notification{{SubscriptionID: plain.ID, DeliveryID: "new"}}
	if err := s.Enqueue(ctx, n); err != nil || n[0].Seq <= old[len(old)-1].Seq {
		t.Errorf("Enqueue after upgrade: seq %d, %v; want more than %d", n[0].Seq, err, old[len(old)-1].Seq)
	}
	if err := s.CreateGroup(ctx, storage.Group{ID: "g", OrganisationID: "org", Name: "fleet", Endpoints: []string{"dev-1"}}); err != nil {
		t.Fatal(err)
	}
	regs, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: "org", Group: "fleet"}, 0, 10)
	if err != nil || total != 1 || len(regs) != 1 || regs[0].ID != reg.ID {
		t.Errorf("ListRegistrations(group) after upgrade = %v (total %d), %v", regs, total, err)
	}
	if v, err := s.GetSetting(ctx, "ca"); err != nil || string(v) != "\x00\xff" {
		t.Errorf("setting after upgrade = %q, %v", v, err)
	}
	if err := s.DeleteSetting(ctx, "ca"); err != nil {
		t.Error(err)
	}
}

func TestPragmas(t *testing.T) {
	for _, tc := range []struct {
		opt  string
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{"", 1}, {"normal", 1}, {"FULL", 2}} {
		t.Run(tc.opt, func(t *testing.T) {
			s := openTest(t, t.TempDir(), tc.opt)
			defer s.Close()
			var mode string
			var sync int
			if err := s.w.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
				t.Fatal(err)
			}
			if err := s.w.QueryRowContext(t.Context(), `PRAGMA synchronous`).Scan(&sync); err != nil {
				t.Fatal(err)
			}
			if mode != "wal" || sync != tc.want {
				t.Errorf("journal_mode %s synchronous %d, want wal %d", mode, sync, tc.want)
			}
			// The read pool must not write.
			if _, err := s.r.ExecContext(t.Context(), `DELETE FROM organisations`); err == nil {
				t.Error("write through the read pool succeeded")
			}
		})
	}
}

func TestErrorsNameOperation(t *testing.T) {
	s := openTest(t, t.TempDir(), "")
	defer s.Close()
	_, err := s.GetRegistration(t.Context(), "reg-x")
	if err == nil || !strings.HasPrefix(err.Error(), `sqlite: get registration "reg-x": `) {
		t.Errorf("error = %v", err)
	}
	if err := s.CreateOrganisation(t.Context(), storage.Organisation{ID: "o"}); err != nil {
		t.Fatal(err)
	}
	err = s.CreateOrganisation(t.Context(), storage.Organisation{ID: "o"})
	if err == nil || !strings.HasPrefix(err.Error(), `sqlite: create organisation "o": `) {
		t.Errorf("error = %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	s := openTest(t, t.TempDir(), "")
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.PutRegistration(ctx, lwm2m.Registration{ID: "r", Organisation: "o", Endpoint: "e"}); err == nil {
		t.Error("PutRegistration with a cancelled context succeeded")
	}
	if _, err := s.GetRegistration(t.Context(), "r"); err == nil {
		t.Error("registration written despite the cancelled context")
	}
}

// Group commit.

// runInOneBatch runs the writes as one batch of the writer, each with ctx
// unless cancelled is set for it, and returns each write's error wrapped
// as its caller would see it.
func runInOneBatch(t *testing.T, s *Store, writes []batchWrite) []error {
	t.Helper()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	reqs := make([]*writeReq, len(writes))
	for i, w := range writes {
		ctx := t.Context()
		if w.cancelled {
			ctx = cancelled
		}
		reqs[i] = &writeReq{ctx: ctx, run: w.run, done: make(chan error, 1)}
	}
	s.runBatch(reqs)
	errs := make([]error, len(writes))
	for i, r := range reqs {
		select {
		case err := <-r.done:
			errs[i] = wrap(writes[i].name, err)
		default:
			t.Fatalf("%s was not answered", writes[i].name)
		}
	}
	return errs
}

type batchWrite struct {
	name      string
	run       func(tx *batchTx) error
	cancelled bool // the caller gave up while queued
}

func putReq(t *testing.T, r lwm2m.Registration) func(tx *batchTx) error {
	t.Helper()
	run, err := putRegistration(r)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// TestBatchPerCallOutcomes runs the real writes of several calls as one
// batch and checks that each call gets its own outcome. A conflict or a
// missing row fails only that call. The calls take effect in order, and
// everything that succeeded is committed.
func TestBatchPerCallOutcomes(t *testing.T) {
	s := openTest(t, t.TempDir(), "")
	defer s.Close()
	ctx := t.Context()
	reg := func(id, endpoint string) lwm2m.Registration {
		return lwm2m.Registration{ID: id, Organisation: "org", Endpoint: endpoint, ExpiresAt: time.Unix(1e9, 0)}
	}
	if err := s.PutRegistration(ctx, reg("reg-1", "dev-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSubscription(ctx, storage.Subscription{ID: "sub", OrganisationID: "org"}); err != nil {
		t.Fatal(err)
	}
	notes := []storage.Notification{{SubscriptionID: "sub", DeliveryID: "d1"}, {SubscriptionID: "sub", DeliveryID: "d2"}}
	runEnqueue, seqs := enqueue(notes)

	errs := runInOneBatch(t, s, []batchWrite{
		{name: "put reg-2", run: putReq(t, reg("reg-2", "dev-2"))},
		{name: "put reg-x", run: putReq(t, reg("reg-x", "dev-1"))}, // dev-1 is reg-1's
		{name: "delete missing", run: deleteRegistration("missing")},
		{name: "put reg-3", run: putReq(t, reg("reg-3", "dev-3")), cancelled: true},
		{name: "delete reg-1", run: deleteRegistration("reg-1")},
		{name: "put reg-y", run: putReq(t, reg("reg-y", "dev-1"))}, // free since the delete before it
		{name: "put reg-z", run: putReq(t, reg("reg-z", "dev-2"))}, // taken by reg-2 in this batch
		{name: "enqueue", run: runEnqueue},
	})
	want := []error{nil, storage.ErrConflict, storage.ErrNotFound, context.Canceled, nil, nil, storage.ErrConflict, nil}
	for i, err := range errs {
		if want[i] == nil && err != nil || want[i] != nil && !errors.Is(err, want[i]) {
			t.Errorf("call %d: error %v, want %v", i, err, want[i])
		}
	}
	for id, stored := range map[string]bool{
		"reg-1": false, "reg-2": true, "reg-x": false, "reg-3": false, "reg-y": true, "reg-z": false,
	} {
		_, err := s.GetRegistration(ctx, id)
		if stored && err != nil || !stored && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetRegistration(%s) after the batch: %v, want stored %v", id, err, stored)
		}
	}
	pending, err := s.Pending(ctx, "sub", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].Seq != seqs[0] || pending[1].Seq != seqs[1] || seqs[0] >= seqs[1] {
		t.Errorf("outbox after the batch = %+v, enqueue seqs %v", pending, seqs)
	}
}

// TestBatchFallback checks that a call failing for a reason that may
// damage the transaction does not fail the others. The batch is rolled
// back, and every call is run again in a transaction of its own.
func TestBatchFallback(t *testing.T) {
	s := openTest(t, t.TempDir(), "")
	defer s.Close()
	ctx := t.Context()
	reg := func(id string) lwm2m.Registration {
		return lwm2m.Registration{ID: id, Organisation: "org", Endpoint: id}
	}
	broken := errors.New("disk on fire")
	putF := putReq(t, reg("reg-f"))
	errs := runInOneBatch(t, s, []batchWrite{
		{name: "put reg-a", run: putReq(t, reg("reg-a"))},
		{name: "failing", run: func(tx *batchTx) error {
			if err := putF(tx); err != nil {
				return err
			}
			return broken
		}},
		{name: "put reg-b", run: putReq(t, reg("reg-b"))},
	})
	if errs[0] != nil || !errors.Is(errs[1], broken) || errs[2] != nil {
		t.Errorf("errors %v, want [nil %v nil]", errs, broken)
	}
	for id, stored := range map[string]bool{"reg-a": true, "reg-f": false, "reg-b": true} {
		_, err := s.GetRegistration(ctx, id)
		if stored && err != nil || !stored && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetRegistration(%s): %v, want stored %v", id, err, stored)
		}
	}
}

// TestBatchCommitFails makes a batch's COMMIT fail. A deferred foreign key
// is checked only at COMMIT, and SQLite then leaves the transaction open.
// The calls that did nothing wrong must still succeed, the offending one
// must fail, and the writer's connection must not stay inside the failed
// transaction.
func TestBatchCommitFails(t *testing.T) {
	s := openTest(t, t.TempDir(), "")
	defer s.Close()
	ctx := t.Context()
	// On the writer's only connection, so the setting holds for the batch.
	for _, q := range []string{
		`PRAGMA foreign_keys = ON`,
		`CREATE TABLE test_parent (id TEXT PRIMARY KEY)`,
		`CREATE TABLE test_child (parent TEXT REFERENCES test_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
	} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	reg := func(id string) lwm2m.Registration {
		return lwm2m.Registration{ID: id, Organisation: "org", Endpoint: id}
	}
	errs := runInOneBatch(t, s, []batchWrite{
		{name: "put reg-a", run: putReq(t, reg("reg-a"))},
		{name: "orphan", run: func(tx *batchTx) error {
			_, err := tx.tx.Exec(`INSERT INTO test_child (parent) VALUES ('none')`)
			return err
		}},
		{name: "put reg-b", run: putReq(t, reg("reg-b"))},
	})
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Errorf("errors %v, want [nil <foreign key error> nil]", errs)
	}
	for _, id := range []string{"reg-a", "reg-b"} {
		if _, err := s.GetRegistration(ctx, id); err != nil {
			t.Errorf("GetRegistration(%s): %v", id, err)
		}
	}
	// The connection is usable: no transaction was left open.
	if err := s.PutRegistration(ctx, reg("reg-c")); err != nil {
		t.Errorf("PutRegistration after the failed commit: %v", err)
	}
	if err := s.DeleteSubscription(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteSubscription after the failed commit: %v", err)
	}
}

// doneSignal is a context that reports when Done is first asked for:
// write asks for it only when it is about to wait to be queued.
type doneSignal struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (c *doneSignal) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}

// unservedStore is a Store whose write queue no writer serves, as when
// the writer is busy and the queue is full.
func unservedStore() *Store {
	return &Store{writes: make(chan *writeReq), closing: make(chan struct{}), writerDone: make(chan struct{})}
}

func TestWriteCancelledWhileQueueing(t *testing.T) {
	s := unservedStore()
	parent, cancel := context.WithCancel(t.Context())
	ctx := &doneSignal{Context: parent, asked: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(ctx, "put registration \"r\"", func(*batchTx) error { return errors.New("ran") })
	}()
	<-ctx.asked
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), `sqlite: put registration "r": `) {
		t.Errorf("write cancelled while waiting to be queued: %v", err)
	}
}

func TestWriteClosedWhileQueueing(t *testing.T) {
	s := unservedStore()
	ctx := &doneSignal{Context: t.Context(), asked: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(ctx, "ack", func(*batchTx) error { return errors.New("ran") })
	}()
	<-ctx.asked
	close(s.closing)
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("write while the store closes: %v", err)
	}
}

// TestCloseWhileWriting closes the store while writers are busy. Every call
// must return, a call that succeeded must be in the database, and a call
// that failed may only have failed because the store was closed.
func TestCloseWhileWriting(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, "")
	ctx := t.Context()
	const writers, each = 20, 50
	ok := make([][]string, writers)
	var wg sync.WaitGroup
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Go(func() {
			started <- struct{}{}
			for i := range each {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				err := s.PutRegistration(ctx, lwm2m.Registration{ID: id, Organisation: "org", Endpoint: id})
				if err != nil {
					if !strings.Contains(err.Error(), "store is closed") {
						t.Errorf("PutRegistration(%s): %v", id, err)
					}
					return
				}
				ok[w] = append(ok[w], id)
			}
		})
	}
	for range writers {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s = openTest(t, dir, "")
	defer s.Close()
	n := 0
	for _, ids := range ok {
		for _, id := range ids {
			if _, err := s.GetRegistration(ctx, id); err != nil {
				t.Errorf("%s was reported written before Close: %v", id, err)
			}
			n++
		}
	}
	t.Logf("%d of %d writes done before Close", n, writers*each)
}

// Kill test: a child process writes and reports each commit on stdout; the
// parent SIGKILLs it mid-stream and checks that every reported commit is in
// the database.

const helperEnv = "DEVICESERVER_SQLITE_HELPER"

// TestHelperProcess is the child of TestKill; run normally it does nothing.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return
	}
	sync, dir, _ := strings.Cut(spec, ":")
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{Synchronous: sync})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	if err := s.CreateSubscription(ctx, storage.Subscription{ID: "sub", OrganisationID: "org"}); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	// Runs until killed; a bound keeps an orphaned child from running forever.
	for i := range 1_000_000 {
		r := killReg(i)
		if err := s.PutRegistration(ctx, r); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		n := []storage.Notification{{SubscriptionID: "sub", DeliveryID: r.ID, Body: []byte(`{"i":` + strconv.Itoa(i) + `}`), CreatedAt: r.RegisteredAt}}
		if err := s.Enqueue(ctx, n); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		// Reported only after both commits; a write error means the parent is gone.
		if _, err := fmt.Fprintf(os.Stdout, "committed %d %d\n", i, n[0].Seq); err != nil {
			os.Exit(3)
		}
	}
	os.Exit(0)
}

func killReg(i int) lwm2m.Registration {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return lwm2m.Registration{
		ID: fmt.Sprintf("reg-%06d", i), Organisation: "org", Endpoint: fmt.Sprintf("dev-%06d", i),
		Lifetime: 60, Version: "1.1", Binding: "U", RootPath: "/", Address: "192.0.2.1:5683", Transport: "udp",
		Objects:      []lwm2m.LinkedObject{{Path: lwm2m.InstancePath(3, 0)}},
		RegisteredAt: at, LastUpdate: at, ExpiresAt: at.Add(time.Minute),
	}
}

func TestKill(t *testing.T) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		t.Run(sync, func(t *testing.T) { testKill(t, sync) })
	}
}

func testKill(t *testing.T, sync string) {
	const killAfter = 200 // lines read before the kill
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+sync+":"+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	committed := map[int]int64{} // registration index -> outbox seq
	sc := bufio.NewScanner(out)
	read := func() bool {
		for sc.Scan() {
			var i int
			var seq int64
			if _, err := fmt.Sscanf(sc.Text(), "committed %d %d", &i, &seq); err != nil {
				continue // other output of the test binary
			}
			committed[i] = seq
			return true
		}
		return false
	}
	for len(committed) < killAfter {
		if !read() {
			cmd.Wait()
			t.Fatalf("child ended after %d commits: %s", len(committed), stderr.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code, no Close
		t.Fatal(err)
	}
	// Lines already in the pipe were written after their commits too.
	for read() {
	}
	if _, err := io.Copy(io.Discard, out); err != nil {
		t.Log(err)
	}
	err = cmd.Wait()
	if st, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !st.Signaled() {
		t.Fatalf("child was not killed (%v); it ran to the end: %s", err, stderr.String())
	}
	t.Logf("%s: child killed after reporting %d commits", sync, len(committed))

	s := openTest(t, dir, sync)
	defer s.Close()
	ctx := t.Context()
	for i := range committed {
		want := killReg(i)
		got, err := s.GetRegistration(ctx, want.ID)
		if err != nil {
			t.Fatalf("reported commit %d lost: %v", i, err)
		}
		if !got.ExpiresAt.Equal(want.ExpiresAt) || got.Endpoint != want.Endpoint {
			t.Errorf("registration %d = %+v, want %+v", i, got, want)
		}
	}
	pending, err := s.Pending(ctx, "sub", 0)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[int64]storage.Notification{}
	for j, n := range pending {
		bySeq[n.Seq] = n
		if j > 0 && n.Seq <= pending[j-1].Seq {
			t.Errorf("outbox out of order at %d: %d after %d", j, n.Seq, pending[j-1].Seq)
		}
	}
	for i, seq := range committed {
		n, ok := bySeq[seq]
		if !ok {
			t.Fatalf("reported outbox entry %d (seq %d) lost", i, seq)
		}
		if n.DeliveryID != killReg(i).ID {
			t.Errorf("outbox seq %d holds %s, want %s", seq, n.DeliveryID, killReg(i).ID)
		}
	}
	// The store is usable after recovery.
	if err := s.PutRegistration(ctx, killReg(9_999_999)); err != nil {
		t.Errorf("PutRegistration after recovery: %v", err)
	}
}

// Benchmarks. Run with -benchtime=2s; ops/s is per Store call.

func benchRegistration(i int) lwm2m.Registration {
	at := time.Now().UTC()
	return lwm2m.Registration{
		ID:             fmt.Sprintf("0196b1c2-7f3e-7a4b-9c1d-%012d", i),
		Organisation:   "0196b1c2-0000-7000-8000-000000000001",
		Endpoint:       fmt.Sprintf("urn:imei:35%013d", i),
		Lifetime:       86400,
		Version:        "1.1",
		Binding:        "UQ",
		QueueMode:      true,
		RootPath:       "/",
		ContentFormats: []lwm2m.ContentFormat{lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatTLV},
		Objects: []lwm2m.LinkedObject{
			{Path: lwm2m.ObjectPath(1), Version: "1.1"}, {Path: lwm2m.InstancePath(1, 0)},
			{Path: lwm2m.InstancePath(3, 0)}, {Path: lwm2m.InstancePath(4, 0)}, {Path: lwm2m.InstancePath(5, 0)},
			{Path: lwm2m.InstancePath(6, 0)}, {Path: lwm2m.InstancePath(19, 0)}, {Path: lwm2m.InstancePath(19, 1)},
			{Path: lwm2m.InstancePath(3303, 0), Version: "1.1"}, {Path: lwm2m.InstancePath(3304, 0), Version: "1.1"},
		},
		Address:      "203.0.113.45:56830",
		Transport:    "dtls",
		RegisteredAt: at,
		LastUpdate:   at,
		ExpiresAt:    at.Add(24 * time.Hour),
	}
}

func openBench(b *testing.B, sync string) *Store {
	b.Helper()
	s, err := Open(b.Context(), b.TempDir(), Options{Synchronous: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// measureCPU starts measuring the process's CPU time; the returned
// function reports it per operation as cpu-µs/op. It includes every
// goroutine (the writer's too) and the kernel time of the writes, which
// ns/op of a parallel benchmark does not show.
func measureCPU(b *testing.B) func() {
	start, ok := processCPU()
	return func() {
		end, _ := processCPU()
		if ok && b.N > 0 {
			b.ReportMetric(float64((end-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

// runParallel runs op b.N times from parallelism goroutines per GOMAXPROCS
// (0: one goroutine in all), each call with a distinct increasing i.
func runParallel(b *testing.B, parallelism int, op func(i int64) error) {
	var next atomic.Int64
	cpu := measureCPU(b)
	if parallelism == 0 {
		for b.Loop() {
			if err := op(next.Add(1)); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(next.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	cpu()
	reportOps(b)
}

// benchModes are the concurrency levels of the write benchmarks: one
// caller; one per core; and 50 per core, like a device server handling
// many devices at once, which is where group commit batches.
func benchModes() []benchMode {
	return []benchMode{{"sequential", 0}, {"parallel", 1}, {"parallel50", 50}}
}

type benchMode struct {
	name        string
	parallelism int
}

// BenchmarkPutRegistration measures registration upserts over 1000 devices
// at each concurrency level of benchModes.
func BenchmarkPutRegistration(b *testing.B) {
	const devices = 1000
	regs := make([]lwm2m.Registration, devices)
	for i := range regs {
		regs[i] = benchRegistration(i)
	}
	for _, sync := range []string{"NORMAL", "FULL"} {
		for _, m := range benchModes() {
			b.Run(sync+"/"+m.name, func(b *testing.B) {
				s := openBench(b, sync)
				ctx := b.Context()
				runParallel(b, m.parallelism, func(i int64) error {
					return s.PutRegistration(ctx, regs[i%devices])
				})
			})
		}
	}
}

// BenchmarkRegisterDeregister measures a device's whole life in the store:
// PutRegistration then DeleteRegistration (one op = both).
func BenchmarkRegisterDeregister(b *testing.B) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		for _, m := range benchModes() {
			b.Run(sync+"/"+m.name, func(b *testing.B) {
				s := openBench(b, sync)
				ctx := b.Context()
				runParallel(b, m.parallelism, func(i int64) error {
					r := benchRegistration(int(i))
					if err := s.PutRegistration(ctx, r); err != nil {
						return err
					}
					return s.DeleteRegistration(ctx, r.ID)
				})
			})
		}
	}
}

// BenchmarkEnqueueAck measures one notification through the outbox: an
// Enqueue of one entry and its Ack (one op = both), each caller on a
// subscription of its own.
func BenchmarkEnqueueAck(b *testing.B) {
	body := []byte(`{"subscriptionId":"sub","clientId":"reg-1","links":[{"rel":"client","href":"https://x/clients/reg-1"}],"value":{"SensorValue":21.5}}`)
	for _, sync := range []string{"NORMAL", "FULL"} {
		for _, m := range benchModes() {
			b.Run(sync+"/"+m.name, func(b *testing.B) {
				s := openBench(b, sync)
				ctx := b.Context()
				const subs = 100
				for i := range subs {
					if err := s.CreateSubscription(ctx, storage.Subscription{ID: fmt.Sprint("sub-", i), OrganisationID: "org"}); err != nil {
						b.Fatal(err)
					}
				}
				runParallel(b, m.parallelism, func(i int64) error {
					sub := fmt.Sprint("sub-", i%subs)
					n := []storage.Notification{{SubscriptionID: sub, DeliveryID: "d", Body: body, CreatedAt: time.Now()}}
					if err := s.Enqueue(ctx, n); err != nil {
						return err
					}
					return s.Ack(ctx, sub, n[0].Seq)
				})
			})
		}
	}
}

// BenchmarkOutbox measures the webhook outbox as the subscriptions engine
// drives it: notifications of 100 subscriptions are enqueued one per
// Enqueue by 50 callers per core, while one drainer goes round the
// subscriptions reading Pending(limit 100) and acknowledging what it read
// with one Ack; "mark+ack" also marks the entries read with MarkBatch
// first, as batched delivery does. One op is one notification enqueued
// and drained; the clock stops when the drainer has acknowledged all b.N.
// notes/drain is the mean number of entries one Pending call returned.
func BenchmarkOutbox(b *testing.B) {
	body := []byte(`{"subscriptionId":"sub","clientId":"reg-1","links":[{"rel":"client","href":"https://x/clients/reg-1"}],"value":{"SensorValue":21.5}}`)
	for _, sync := range []string{"NORMAL", "FULL"} {
		for _, mark := range []bool{false, true} {
			name := sync + "/ack"
			if mark {
				name = sync + "/mark+ack"
			}
			b.Run(name, func(b *testing.B) {
				s := openBench(b, sync)
				ctx := b.Context()
				const subs = 100
				ids := make([]string, subs)
				for i := range ids {
					ids[i] = fmt.Sprint("sub-", i)
					if err := s.CreateSubscription(ctx, storage.Subscription{ID: ids[i], OrganisationID: "org"}); err != nil {
						b.Fatal(err)
					}
				}
				stop := make(chan struct{}) // closed if the producers fail
				type result struct {
					drains, entries int64
					err             error
				}
				done := make(chan result, 1)
				cpu := measureCPU(b)
				b.ResetTimer()
				go func() {
					var r result
					r.drains, r.entries, r.err = drainOutbox(ctx, s, ids, int64(b.N), mark, stop)
					done <- r
				}()
				var next atomic.Int64
				b.SetParallelism(50)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := next.Add(1)
						n := []storage.Notification{{SubscriptionID: ids[i%subs], DeliveryID: strconv.FormatInt(i, 10), Body: body, CreatedAt: time.Now()}}
						if err := s.Enqueue(ctx, n); err != nil {
							b.Error(err)
							return
						}
					}
				})
				if b.Failed() {
					close(stop)
				}
				r := <-done
				b.StopTimer()
				if r.err != nil {
					b.Fatal(r.err)
				}
				cpu()
				b.ReportMetric(float64(r.entries)/b.Elapsed().Seconds(), "notifications/s")
				if r.drains > 0 {
					b.ReportMetric(float64(r.entries)/float64(r.drains), "notes/drain")
				}
			})
		}
	}
}

// drainOutbox is BenchmarkOutbox's drainer: it goes round the
// subscriptions until it has acknowledged total entries, and returns how
// many Pending calls returned entries and how many entries they returned.
func drainOutbox(ctx context.Context, s *Store, ids []string, total int64, mark bool, stop <-chan struct{}) (drains, entries int64, err error) {
	for entries < total {
		idle := true
		for _, id := range ids {
			p, err := s.Pending(ctx, id, 100)
			if err != nil {
				return drains, entries, err
			}
			if len(p) == 0 {
				continue
			}
			idle = false
			last := p[len(p)-1].Seq
			if mark {
				if err := s.MarkBatch(ctx, id, last, strconv.FormatInt(last, 10)); err != nil {
					return drains, entries, err
				}
			}
			if err := s.Ack(ctx, id, last); err != nil {
				return drains, entries, err
			}
			drains++
			entries += int64(len(p))
		}
		if idle {
			// A real drainer would wait to be woken; polling at once
			// would take the producers' CPU.
			select {
			case <-stop:
				return drains, entries, nil
			case <-time.After(time.Millisecond):
			}
		}
	}
	return drains, entries, nil
}

// BenchmarkGetRegistration measures reads through the read pool while
// nothing writes.
func BenchmarkGetRegistration(b *testing.B) {
	s := openBench(b, "")
	ctx := b.Context()
	const devices = 1000
	for i := range devices {
		if err := s.PutRegistration(ctx, benchRegistration(i)); err != nil {
			b.Fatal(err)
		}
	}
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = benchRegistration(i).ID
	}
	runParallel(b, 1, func(i int64) error {
		_, err := s.GetRegistration(ctx, ids[i%devices])
		return err
	})
}

// BenchmarkMixed measures a parallel workload of one registration upsert
// to four reads (GetRegistration), the server's typical mix.
func BenchmarkMixed(b *testing.B) {
	s := openBench(b, "")
	ctx := b.Context()
	const devices = 1000
	regs := make([]lwm2m.Registration, devices)
	for i := range regs {
		regs[i] = benchRegistration(i)
		if err := s.PutRegistration(ctx, regs[i]); err != nil {
			b.Fatal(err)
		}
	}
	runParallel(b, 1, func(i int64) error {
		if i%5 == 0 {
			return s.PutRegistration(ctx, regs[i%devices])
		}
		_, err := s.GetRegistration(ctx, regs[i%devices].ID)
		return err
	})
}
