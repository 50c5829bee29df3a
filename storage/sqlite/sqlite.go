// Package sqlite implements storage.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go, no cgo) kept in the file deviceserver.db of
// a directory.
//
// Each record kind has a table with the few columns that are looked up,
// ordered or filtered on, and a JSON document column holding the record
// itself, so that the layout maps one to one onto document collections
// (MongoDB) later.
//
// # Concurrency
//
// The database runs in WAL mode. Writes go through a pool of exactly one
// connection that begins its transactions IMMEDIATE: SQLite admits a single
// writer anyway, and queueing writers in database/sql rather than in SQLite's
// busy handler avoids SQLITE_BUSY on lock upgrades and is faster. Reads use a
// separate pool of query-only connections, which in WAL mode never block
// the writer nor are blocked by it.
//
// The writes made per device or per notification (PutRegistration,
// DeleteRegistration, Enqueue, Ack, MarkBatch) are group committed:
// concurrent calls are queued and committed together in one transaction by
// a writer goroutine (see batch.go), each call still getting its own
// result. The statements run often are prepared once at Open (see stmts.go).
//
// # Durability
//
// Every method that changes data returns only after its transaction has
// committed. What survives depends on Options.Synchronous:
//
//   - "NORMAL" (default): a committed transaction survives the server
//     process being killed (SIGKILL, panic, OOM kill), because the commit
//     has been written to the WAL file in the operating system's cache. It
//     may be lost if the operating system crashes or power fails before the
//     next WAL checkpoint syncs it; the database file stays consistent.
//   - "FULL": the WAL is fsynced at every commit, so a committed transaction
//     also survives an operating-system crash or power loss, at the cost of
//     one fsync per write transaction.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/storage"
)

// FileName is the name of the database file inside the directory given to Open.
const FileName = "deviceserver.db"

// busyTimeout bounds how long a connection waits for a lock held by another
// process (or a checkpoint) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Options configure Open. The zero value is valid.
type Options struct {
	// Synchronous is the SQLite synchronous setting: "NORMAL" (default) or
	// "FULL". See the package documentation for what each guarantees.
	Synchronous string
	// Logger receives open/migration messages; nil discards them.
	Logger *slog.Logger
}

// Store is a storage.Store backed by SQLite. It is safe for concurrent use.
type Store struct {
	w     *sql.DB // single connection, all writes
	r     *sql.DB // query-only connections, all plain reads
	stmts [numStmts]*sql.Stmt
	log   *slog.Logger
	path  string

	// Group commit (batch.go).
	writes     chan *writeReq
	closing    chan struct{} // closed by Close
	writerDone chan struct{} // closed when the writer goroutine has stopped
	// writerStarted is set by Open before it returns the Store, so that a
	// Close after a failed Open does not wait for a writer that never ran.
	writerStarted bool

	closeOnce sync.Once
	closeErr  error
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database dir/deviceserver.db, creating
// dir as well, and brings its schema up to date.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	syncMode := strings.ToUpper(opts.Synchronous)
	switch syncMode {
	case "":
		syncMode = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return nil, fmt.Errorf("sqlite: open: synchronous must be NORMAL or FULL, not %q", opts.Synchronous)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// The driver splits its parameters off at the first '?'.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: open: path %q must not contain '?'", path)
	}
	bt := fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds())

	s := &Store{
		log:        log,
		path:       path,
		writes:     make(chan *writeReq, maxBatch),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	s.w, err = sql.Open("sqlite", path+"?"+bt+"&_pragma=journal_mode(WAL)&_pragma=synchronous("+syncMode+")&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	s.r, err = sql.Open("sqlite", path+"?"+bt+"&_pragma=query_only(1)")
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)

	if err := s.init(ctx, syncMode); err != nil {
		s.Close()
		return nil, err
	}
	s.writerStarted = true
	go s.writeLoop()
	return s, nil
}

func (s *Store) init(ctx context.Context, sync string) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		// Some file systems (network mounts) cannot do WAL; the store still
		// works, with readers and the writer blocking each other.
		s.log.Warn("sqlite: WAL mode unavailable", "path", s.path, "journal_mode", mode)
	}
	from, to, err := migrate(ctx, s.w)
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if from != to {
		s.log.Info("sqlite: schema migrated", "path", s.path, "from", from, "to", to)
	}
	// Fail now rather than on the first read if the read pool cannot open.
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if err := s.prepare(ctx); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	s.log.Info("sqlite: opened", "path", s.path, "synchronous", sync, "journal_mode", mode, "schema", to)
	return nil
}

// Close closes the database. Writes queued before Close are still run;
// later ones fail. Pending outbox entries and everything else committed
// stay in the file. Close may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.writerStarted {
			<-s.writerDone
		} else {
			close(s.writerDone)
		}
		err := s.closeStmts()
		if s.r != nil {
			err = errors.Join(err, s.r.Close())
		}
		if s.w != nil {
			// Closing the last connection checkpoints the WAL into the database file.
			err = errors.Join(err, s.w.Close())
		}
		if err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}

// wrap prefixes err with the operation and maps driver errors onto the
// storage sentinels.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, storage.ErrNotFound)
	}
	if isConflict(err) {
		return fmt.Errorf("sqlite: %s: %w: %w", op, storage.ErrConflict, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// isConflict reports whether err is a primary key or unique violation.
func isConflict(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	}
	return false
}

// isConstraint reports whether err is a constraint violation of any kind.
// SQLite undoes only the violating statement, and the transaction around
// it stays usable.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// execOne runs a write statement that must affect a row; none is ErrNotFound.
func (s *Store) execOne(ctx context.Context, op, query string, args ...any) error {
	return wrap(op, oneRow(s.w.ExecContext(ctx, query, args...)))
}

// oneRow checks the result of a write that must affect a row: none is
// sql.ErrNoRows, which wrap turns into ErrNotFound.
func oneRow(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return sql.ErrNoRows
	}
	return nil
}

// inTx runs f in an IMMEDIATE write transaction, committing when f succeeds.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback() // the error of f is the one that matters
		return err
	}
	if err := tx.Commit(); err != nil {
		s.endFailedCommit(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// nanos encodes t for an indexed INTEGER column: Unix nanoseconds, clamped
// so that times outside 1678..2262 (including the zero time) still sort
// correctly instead of overflowing.
func nanos(t time.Time) int64 {
	const limit = math.MaxInt64 / int64(time.Second)
	switch sec := t.Unix(); {
	case sec < -limit:
		return math.MinInt64
	case sec >= limit:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// textTime encodes t for a TEXT column with full precision.
func textTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func parseTextTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func encode(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func decode[T any](doc string) (T, error) {
	var v T
	err := json.Unmarshal([]byte(doc), &v)
	return v, err
}

// scanDocs decodes every row of a query whose only column is a JSON
// document; it takes the query's results as they are, so that it serves
// plain and prepared queries alike.
func scanDocs[T any](rows *sql.Rows, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		v, err := decode[T](doc)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// getDoc reads one JSON document with a prepared read statement; no row
// is ErrNotFound.
func getDoc[T any](ctx context.Context, st *sql.Stmt, op string, args ...any) (T, error) {
	var doc string
	if err := st.QueryRowContext(ctx, args...).Scan(&doc); err != nil {
		var zero T
		return zero, wrap(op, err)
	}
	v, err := decode[T](doc)
	return v, wrap(op, err)
}

// Organisations.

// CreateOrganisation stores a new organisation; an existing ID is ErrConflict.
func (s *Store) CreateOrganisation(ctx context.Context, o storage.Organisation) error {
	op := fmt.Sprintf("create organisation %q", o.ID)
	doc, err := encode(o)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO organisations (id, created_at, doc) VALUES (?, ?, ?)`,
		o.ID, nanos(o.CreatedAt), doc)
	return wrap(op, err)
}

// GetOrganisation returns the organisation with the ID.
func (s *Store) GetOrganisation(ctx context.Context, id string) (storage.Organisation, error) {
	return getDoc[storage.Organisation](ctx, s.stmt(stGetOrganisation), fmt.Sprintf("get organisation %q", id), id)
}

// ListOrganisations returns all organisations ordered by CreatedAt.
func (s *Store) ListOrganisations(ctx context.Context) ([]storage.Organisation, error) {
	out, err := scanDocs[storage.Organisation](s.r.QueryContext(ctx, `SELECT doc FROM organisations ORDER BY created_at, id`))
	return out, wrap("list organisations", err)
}

// Access keys and refresh tokens.

// CreateAccessKey stores a new access key; an existing key is ErrConflict.
func (s *Store) CreateAccessKey(ctx context.Context, k storage.AccessKey) error {
	op := fmt.Sprintf("create access key %q", k.Key)
	doc, err := encode(k)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO access_keys (key, organisation_id, created_at, doc) VALUES (?, ?, ?, ?)`,
		k.Key, k.OrganisationID, nanos(k.CreatedAt), doc)
	return wrap(op, err)
}

// GetAccessKey returns the access key.
func (s *Store) GetAccessKey(ctx context.Context, key string) (storage.AccessKey, error) {
	return getDoc[storage.AccessKey](ctx, s.stmt(stGetAccessKey), fmt.Sprintf("get access key %q", key), key)
}

// ListAccessKeys returns an organisation's keys ordered by CreatedAt.
func (s *Store) ListAccessKeys(ctx context.Context, organisationID string) ([]storage.AccessKey, error) {
	out, err := scanDocs[storage.AccessKey](s.r.QueryContext(ctx,
		`SELECT doc FROM access_keys WHERE organisation_id = ? ORDER BY created_at, key`, organisationID))
	return out, wrap(fmt.Sprintf("list access keys of %q", organisationID), err)
}

// UpdateAccessKey replaces an existing access key.
func (s *Store) UpdateAccessKey(ctx context.Context, k storage.AccessKey) error {
	op := fmt.Sprintf("update access key %q", k.Key)
	doc, err := encode(k)
	if err != nil {
		return wrap(op, err)
	}
	return s.execOne(ctx, op, `UPDATE access_keys SET organisation_id = ?, created_at = ?, doc = ? WHERE key = ?`,
		k.OrganisationID, nanos(k.CreatedAt), doc, k.Key)
}

// DeleteAccessKey deletes the key and every refresh token issued to it, in
// one transaction so that no token outlives its key.
func (s *Store) DeleteAccessKey(ctx context.Context, key string) error {
	op := fmt.Sprintf("delete access key %q", key)
	return s.inTxOp(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM access_keys WHERE key = ?`, key)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE key = ?`, key)
		return err
	})
}

// inTxOp is inTx with the result wrapped for op.
func (s *Store) inTxOp(ctx context.Context, op string, f func(tx *sql.Tx) error) error {
	return wrap(op, s.inTx(ctx, f))
}

// PutRefreshToken stores a refresh token; an existing hash is ErrConflict.
func (s *Store) PutRefreshToken(ctx context.Context, t storage.RefreshToken) error {
	op := "put refresh token"
	doc, err := encode(t)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.stmt(stPutRefreshToken).ExecContext(ctx, t.Hash, t.Key, doc)
	return wrap(op, err)
}

// TakeRefreshToken deletes and returns the token in one statement, so that
// of concurrent takers exactly one gets it.
func (s *Store) TakeRefreshToken(ctx context.Context, hash string) (storage.RefreshToken, error) {
	op := "take refresh token"
	var doc string
	if err := s.stmt(stTakeRefreshToken).QueryRowContext(ctx, hash).Scan(&doc); err != nil {
		return storage.RefreshToken{}, wrap(op, err)
	}
	t, err := decode[storage.RefreshToken](doc)
	return t, wrap(op, err)
}

// Registrations.

// PutRegistration inserts or replaces the registration with r.ID. Another
// registration of the same organisation and endpoint is ErrConflict. It is
// group committed (see batch.go).
func (s *Store) PutRegistration(ctx context.Context, r lwm2m.Registration) error {
	op := fmt.Sprintf("put registration %q", r.ID)
	run, err := putRegistration(r)
	if err != nil {
		return wrap(op, err)
	}
	return s.write(ctx, op, run)
}

// putRegistration returns the batched write of PutRegistration. The
// document is encoded here, in the caller's goroutine, so that encoding
// runs in parallel and the writer goroutine only runs SQL.
func putRegistration(r lwm2m.Registration) (func(tx *batchTx) error, error) {
	doc, err := encode(r)
	if err != nil {
		return nil, err
	}
	expires := nanos(r.ExpiresAt)
	return func(tx *batchTx) error {
		_, err := tx.stmt(stPutRegistration).Exec(r.ID, r.Organisation, r.Endpoint, expires, doc)
		if isConstraint(err) {
			return &itemError{err}
		}
		return err
	}, nil
}

// GetRegistration returns the registration with the ID.
func (s *Store) GetRegistration(ctx context.Context, id string) (lwm2m.Registration, error) {
	return getDoc[lwm2m.Registration](ctx, s.stmt(stGetRegistration), fmt.Sprintf("get registration %q", id), id)
}

// GetRegistrationByEndpoint returns the organisation's registration of the endpoint.
func (s *Store) GetRegistrationByEndpoint(ctx context.Context, organisation, endpoint string) (lwm2m.Registration, error) {
	return getDoc[lwm2m.Registration](ctx, s.stmt(stGetRegistrationByEndpoint),
		fmt.Sprintf("get registration of endpoint %q in %q", endpoint, organisation), organisation, endpoint)
}

// ListRegistrations returns one page ordered by endpoint name, and the
// total matching count. A limit <= 0 means no limit. The page and the count
// come from the same snapshot. A zero f.Now with f.Online set means now.
// f.Group selects the members of the organisation's group of that name (an
// unknown name matches nothing); without f.Organisation, the members of the
// groups of that name of every organisation, each with its own devices.
func (s *Store) ListRegistrations(ctx context.Context, f storage.RegistrationFilter, offset, limit int) ([]lwm2m.Registration, int, error) {
	const op = "list registrations"
	var where []string
	var args []any
	if f.Organisation != "" {
		where, args = append(where, "organisation = ?"), append(args, f.Organisation)
	}
	if f.Endpoint != "" {
		where, args = append(where, "endpoint = ?"), append(args, f.Endpoint)
	}
	if f.Online != nil {
		now := f.Now
		if now.IsZero() {
			now = time.Now()
		}
		if *f.Online {
			where = append(where, "expires_at > ?")
		} else {
			where = append(where, "expires_at <= ?")
		}
		args = append(args, nanos(now))
	}
	if f.Group != "" {
		c, a := groupCondition(f)
		where, args = append(where, c), append(args, a...)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	offset = max(offset, 0)

	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, wrap(op, err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to keep
	var total int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM registrations"+cond, args...).Scan(&total); err != nil {
		return nil, 0, wrap(op, err)
	}
	page, err := scanDocs[lwm2m.Registration](tx.QueryContext(ctx,
		"SELECT doc FROM registrations"+cond+" ORDER BY endpoint, organisation, id LIMIT ? OFFSET ?",
		append(args, limit, offset)...))
	if err != nil {
		return nil, 0, wrap(op, err)
	}
	return page, total, nil
}

// ExpiredRegistrations returns registrations whose ExpiresAt is at or
// before now, earliest expiry first.
func (s *Store) ExpiredRegistrations(ctx context.Context, now time.Time) ([]lwm2m.Registration, error) {
	out, err := scanDocs[lwm2m.Registration](s.stmt(stExpiredRegistrations).QueryContext(ctx, nanos(now)))
	return out, wrap("expired registrations", err)
}

// DeleteRegistration deletes the registration with the ID. It is group
// committed (see batch.go).
func (s *Store) DeleteRegistration(ctx context.Context, id string) error {
	return s.write(ctx, fmt.Sprintf("delete registration %q", id), deleteRegistration(id))
}

// deleteRegistration returns the batched write of DeleteRegistration.
func deleteRegistration(id string) func(tx *batchTx) error {
	return func(tx *batchTx) error {
		err := oneRow(tx.stmt(stDeleteRegistration).Exec(id))
		if errors.Is(err, sql.ErrNoRows) {
			return &itemError{err} // nothing changed
		}
		return err
	}
}

// Object definitions.

// PutObjectDefinition inserts or replaces an organisation's definition of o.ID.
func (s *Store) PutObjectDefinition(ctx context.Context, organisationID string, o model.Object) error {
	op := fmt.Sprintf("put object definition %d of %q", o.ID, organisationID)
	doc, err := encode(o)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO object_definitions (organisation_id, object_id, doc) VALUES (?, ?, ?)
		ON CONFLICT (organisation_id, object_id) DO UPDATE SET doc = excluded.doc`,
		organisationID, int64(o.ID), doc)
	return wrap(op, err)
}

// ListObjectDefinitions returns every organisation's definitions, keyed by
// organisation, each list ordered by object ID.
func (s *Store) ListObjectDefinitions(ctx context.Context) (map[string][]model.Object, error) {
	const op = "list object definitions"
	rows, err := s.r.QueryContext(ctx, `SELECT organisation_id, doc FROM object_definitions ORDER BY organisation_id, object_id`)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	out := map[string][]model.Object{}
	for rows.Next() {
		var org, doc string
		if err := rows.Scan(&org, &doc); err != nil {
			return nil, wrap(op, err)
		}
		o, err := decode[model.Object](doc)
		if err != nil {
			return nil, wrap(op, err)
		}
		out[org] = append(out[org], o)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// DeleteObjectDefinition deletes an organisation's definition of the object.
func (s *Store) DeleteObjectDefinition(ctx context.Context, organisationID string, objectID uint16) error {
	return s.execOne(ctx, fmt.Sprintf("delete object definition %d of %q", objectID, organisationID),
		`DELETE FROM object_definitions WHERE organisation_id = ? AND object_id = ?`, organisationID, int64(objectID))
}

// Subscriptions and delivery statistics. The statistics are columns of the
// subscription row, so they go with it.

// CreateSubscription stores a new subscription; an existing ID is ErrConflict.
func (s *Store) CreateSubscription(ctx context.Context, sub storage.Subscription) error {
	op := fmt.Sprintf("create subscription %q", sub.ID)
	doc, err := encode(sub)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO subscriptions (id, organisation_id, client_id, type, path, compat_id, created_at, doc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		sub.ID, sub.OrganisationID, sub.ClientID, sub.Type, sub.Path, sub.CompatID, nanos(sub.CreatedAt), doc)
	return wrap(op, err)
}

// GetSubscription returns the subscription with the ID.
func (s *Store) GetSubscription(ctx context.Context, id string) (storage.Subscription, error) {
	return getDoc[storage.Subscription](ctx, s.stmt(stGetSubscription), fmt.Sprintf("get subscription %q", id), id)
}

// UpdateSubscription replaces an existing subscription, keeping its statistics.
func (s *Store) UpdateSubscription(ctx context.Context, sub storage.Subscription) error {
	op := fmt.Sprintf("update subscription %q", sub.ID)
	doc, err := encode(sub)
	if err != nil {
		return wrap(op, err)
	}
	return s.execOne(ctx, op, `UPDATE subscriptions SET organisation_id = ?, client_id = ?, type = ?, path = ?,
		compat_id = ?, created_at = ?, doc = ? WHERE id = ?`,
		sub.OrganisationID, sub.ClientID, sub.Type, sub.Path, sub.CompatID, nanos(sub.CreatedAt), doc, sub.ID)
}

// ListSubscriptions returns matching subscriptions ordered by CreatedAt.
// CompatID "*" selects every subscription that has a CompatID.
func (s *Store) ListSubscriptions(ctx context.Context, f storage.SubscriptionFilter) ([]storage.Subscription, error) {
	var where []string
	var args []any
	if f.OrganisationID != "" {
		where, args = append(where, "organisation_id = ?"), append(args, f.OrganisationID)
	}
	switch f.ClientID {
	case "":
	case "-":
		where = append(where, "client_id = ''")
	default:
		where, args = append(where, "client_id = ?"), append(args, f.ClientID)
	}
	if f.Path != "" {
		where, args = append(where, "path = ?"), append(args, f.Path)
	}
	if f.Type != "" {
		where, args = append(where, "type = ?"), append(args, f.Type)
	}
	switch f.CompatID {
	case "":
	case "*":
		where = append(where, "compat_id <> ''")
	default:
		// The repeated condition lets SQLite use the partial index
		// subscriptions_compat, which holds only the rows meeting it.
		where, args = append(where, "compat_id = ? AND compat_id <> ''"), append(args, f.CompatID)
	}
	q := "SELECT doc FROM subscriptions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	out, err := scanDocs[storage.Subscription](s.r.QueryContext(ctx, q+" ORDER BY created_at, id", args...))
	return out, wrap("list subscriptions", err)
}

// DeleteSubscription deletes the subscription, its stats and its outbox
// entries in one transaction.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.inTxOp(ctx, fmt.Sprintf("delete subscription %q", id), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM outbox WHERE subscription_id = ?`, id)
		return err
	})
}

// AddDeliveryStats adds the counts of d to the subscription's stats and
// sets LastError / LastSuccess when non-zero in d. A missing subscription
// is ErrNotFound, so that a delivery finishing after a delete leaves nothing behind.
func (s *Store) AddDeliveryStats(ctx context.Context, subscriptionID string, d storage.DeliveryStats) error {
	ls := textTime(d.LastSuccess)
	return wrap(fmt.Sprintf("add delivery stats of %q", subscriptionID), oneRow(s.stmt(stAddDeliveryStats).ExecContext(ctx,
		d.Delivered, d.Dropped, d.LastError, d.LastError, ls, ls, subscriptionID)))
}

// GetDeliveryStats returns the subscription's stats (zero when nothing was
// delivered yet); a missing subscription is ErrNotFound.
func (s *Store) GetDeliveryStats(ctx context.Context, subscriptionID string) (storage.DeliveryStats, error) {
	op := fmt.Sprintf("get delivery stats of %q", subscriptionID)
	var d storage.DeliveryStats
	var ls string
	err := s.stmt(stGetDeliveryStats).QueryRowContext(ctx, subscriptionID).Scan(&d.Delivered, &d.Dropped, &d.LastError, &ls)
	if err != nil {
		return d, wrap(op, err)
	}
	d.LastSuccess, err = parseTextTime(ls)
	return d, wrap(op, err)
}

// Outbox.

// Enqueue appends notifications to the outbox in one transaction and sets
// each n[i].Seq to the sequence number it got. Seq values are never reused,
// even after the entries with the highest numbers have been acknowledged.
// A BatchID already set is stored with the entry (it is normally empty
// until MarkBatch). It is group committed (see batch.go); the entries of
// one call stay together and in order.
func (s *Store) Enqueue(ctx context.Context, n []storage.Notification) error {
	if len(n) == 0 {
		return nil
	}
	run, seqs := enqueue(n)
	if err := s.write(ctx, "enqueue", run); err != nil {
		return err
	}
	// Only once committed, so that a failed Enqueue leaves n untouched.
	for i := range n {
		n[i].Seq = seqs[i]
	}
	return nil
}

// enqueue returns the batched write of Enqueue, and the slice it fills
// with the Seq of each entry.
func enqueue(n []storage.Notification) (func(tx *batchTx) error, []int64) {
	seqs := make([]int64, len(n))
	return func(tx *batchTx) error {
		// Every error here fails the whole batch: the entries of one call
		// must not be committed in part, and the writer then runs each
		// call in a transaction of its own.
		st := tx.stmt(stEnqueue)
		for i, x := range n {
			body := x.Body
			if body == nil {
				body = []byte{}
			}
			res, err := st.Exec(x.SubscriptionID, x.DeliveryID, x.BatchID, textTime(x.CreatedAt), body)
			if err != nil {
				return err
			}
			if seqs[i], err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	}, seqs
}

// Pending returns up to limit outbox entries of a subscription in Seq
// order; limit <= 0 means all.
func (s *Store) Pending(ctx context.Context, subscriptionID string, limit int) ([]storage.Notification, error) {
	op := fmt.Sprintf("pending of %q", subscriptionID)
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.stmt(stPending).QueryContext(ctx, subscriptionID, limit)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []storage.Notification
	for rows.Next() {
		x := storage.Notification{SubscriptionID: subscriptionID}
		var ca string
		if err := rows.Scan(&x.Seq, &x.DeliveryID, &x.BatchID, &ca, &x.Body); err != nil {
			return nil, wrap(op, err)
		}
		if x.CreatedAt, err = parseTextTime(ca); err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, x)
	}
	return out, wrap(op, rows.Err())
}

// PendingCount counts a subscription's outbox entries.
func (s *Store) PendingCount(ctx context.Context, subscriptionID string) (int, error) {
	var n int
	err := s.stmt(stPendingCount).QueryRowContext(ctx, subscriptionID).Scan(&n)
	return n, wrap(fmt.Sprintf("pending count of %q", subscriptionID), err)
}

// SubscriptionsWithPending lists, sorted, the IDs of subscriptions that
// have outbox entries.
func (s *Store) SubscriptionsWithPending(ctx context.Context) ([]string, error) {
	const op = "subscriptions with pending"
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT subscription_id FROM outbox ORDER BY subscription_id`)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, id)
	}
	return out, wrap(op, rows.Err())
}

// Ack removes a subscription's outbox entries with Seq <= upTo. Acking
// nothing is not an error, so that a repeated Ack after a retry is harmless.
// It is group committed (see batch.go).
func (s *Store) Ack(ctx context.Context, subscriptionID string, upTo int64) error {
	return s.write(ctx, fmt.Sprintf("ack %q up to %d", subscriptionID, upTo), func(tx *batchTx) error {
		_, err := tx.stmt(stAck).Exec(subscriptionID, upTo)
		return err
	})
}

// MarkBatch sets batchID on the subscription's outbox entries with Seq <=
// upTo that have none yet; the entries already in a batch keep theirs.
// Marking nothing is not an error, as for Ack. It is group committed (see
// batch.go), so it is durable on return like the other writes.
func (s *Store) MarkBatch(ctx context.Context, subscriptionID string, upTo int64, batchID string) error {
	return s.write(ctx, fmt.Sprintf("mark batch %q of %q up to %d", batchID, subscriptionID, upTo), func(tx *batchTx) error {
		_, err := tx.stmt(stMarkBatch).Exec(batchID, subscriptionID, upTo)
		return err
	})
}

// Observations.

// PutObservation inserts or replaces the observation of o.Path on o.ClientID.
func (s *Store) PutObservation(ctx context.Context, o storage.Observation) error {
	tok := o.Token
	if tok == nil {
		tok = []byte{}
	}
	_, err := s.stmt(stPutObservation).ExecContext(ctx, o.ClientID, o.Path, tok)
	return wrap(fmt.Sprintf("put observation %s of %q", o.Path, o.ClientID), err)
}

// ListObservations returns a client's observations ordered by path.
func (s *Store) ListObservations(ctx context.Context, clientID string) ([]storage.Observation, error) {
	op := fmt.Sprintf("list observations of %q", clientID)
	rows, err := s.stmt(stListObservations).QueryContext(ctx, clientID)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []storage.Observation
	for rows.Next() {
		o := storage.Observation{ClientID: clientID}
		if err := rows.Scan(&o.Path, &o.Token); err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, o)
	}
	return out, wrap(op, rows.Err())
}

// DeleteObservation deletes the observation of path on the client.
func (s *Store) DeleteObservation(ctx context.Context, clientID, path string) error {
	return wrap(fmt.Sprintf("delete observation %s of %q", path, clientID),
		oneRow(s.stmt(stDeleteObservation).ExecContext(ctx, clientID, path)))
}
