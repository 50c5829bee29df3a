// Package storage defines the one interface behind which the server keeps
// everything that must survive a restart: organisations and access keys,
// refresh tokens, registrations, object definitions, subscriptions, stored
// observations and the webhook notification outbox. Implementations live in
// sub-packages (sqlite, later mongo) and all pass storetest's conformance suite.
package storage

import (
	"context"
	"errors"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
)

// Errors every implementation returns (wrapped) so callers can use errors.Is.
var (
	ErrNotFound = errors.New("storage: not found")
	ErrConflict = errors.New("storage: already exists")
)

// Organisation is a tenant.
type Organisation struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"` // the administrator organisation created on first start
	CreatedAt time.Time `json:"createdAt"`
}

// AccessKey is an API credential of an organisation. Only a salted hash of
// the secret is kept.
type AccessKey struct {
	Key            string    `json:"key"`
	Name           string    `json:"name"`
	OrganisationID string    `json:"organisationId"`
	SecretHash     []byte    `json:"secretHash"`
	CreatedAt      time.Time `json:"createdAt"`
}

// RefreshToken is a single-use OAuth2 refresh token, stored by the hash of its value.
type RefreshToken struct {
	Hash           string    `json:"hash"`
	Key            string    `json:"key"` // access key it was issued to
	OrganisationID string    `json:"organisationId"`
	ExpiresAt      time.Time `json:"expiresAt"`
}

// RegistrationFilter selects registrations for listing. Zero fields do not filter.
type RegistrationFilter struct {
	Organisation string
	Endpoint     string
	Online       *bool     // true: ExpiresAt after Now; false: at or before
	Group        string    // name of a group of Organisation: only its member endpoints
	Now          time.Time // reference time for Online
}

// Subscription is a webhook subscription as stored. The subscriptions
// package owns its meaning; the store only keeps it and indexes it by
// ID, organisation and client.
type Subscription struct {
	ID                string           `json:"id"`
	OrganisationID    string           `json:"organisationId"`
	ClientID          string           `json:"clientId,omitempty"` // "" at organisation level
	Type              string           `json:"type"`               // ClientConnected, ..., Observation
	URL               string           `json:"url"`
	AcceptContentType string           `json:"acceptContentType,omitempty"`
	Path              string           `json:"path,omitempty"`     // Observation: "/o/i" or "/o/i/r"
	Property          string           `json:"property,omitempty"` // as the application gave it
	Attributes        lwm2m.Attributes `json:"attributes"`
	DeletionPolicy    int              `json:"deletionPolicy"`
	Secret            string           `json:"secret,omitempty"`
	BaseURL           string           `json:"baseUrl"`            // scheme://host of the API as the creator saw it, for hrefs in notifications
	Criteria          *Criteria        `json:"criteria,omitempty"` // pre-subscriptions (organisation level)
	// Headers are sent with every webhook request (compatibility API
	// callbacks carry the application's own headers).
	Headers map[string]string `json:"headers,omitempty"`
	// CompatID ties the subscriptions made from one compatibility-API
	// (/m2m) subscription together; "" for the others.
	CompatID  string    `json:"compatId,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Criteria select the devices an organisation-level pre-subscription applies to.
type Criteria struct {
	Group           string   `json:"group,omitempty"`
	Endpoints       []string `json:"endpoints,omitempty"`
	Make            string   `json:"make,omitempty"`
	Model           string   `json:"model,omitempty"`
	FirmwareVersion string   `json:"firmwareVersion,omitempty"`
}

// SubscriptionFilter selects subscriptions for listing. Zero fields do not filter.
// ClientID "-" selects organisation-level subscriptions only.
type SubscriptionFilter struct {
	OrganisationID string
	ClientID       string
	Path           string
	Type           string
	CompatID       string // "*": every subscription with a CompatID
}

// Group is a named set of endpoint names of one organisation. Membership
// is by name, so a device can be put in a group before it ever registers.
type Group struct {
	ID             string    `json:"id"`
	OrganisationID string    `json:"organisationId"`
	Name           string    `json:"name"` // unique within the organisation
	Endpoints      []string  `json:"endpoints"`
	CreatedAt      time.Time `json:"createdAt"`
}

// DeliveryStats is the delivery state of one subscription.
type DeliveryStats struct {
	Delivered   int64     `json:"delivered"`
	Dropped     int64     `json:"dropped"`
	LastError   string    `json:"lastError,omitempty"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// Notification is one webhook notification waiting in the outbox.
type Notification struct {
	Seq            int64  `json:"seq"` // assigned by the store, increasing per store
	SubscriptionID string `json:"subscriptionId"`
	DeliveryID     string `json:"deliveryId"`
	Body           []byte `json:"body"` // one notification item, JSON
	// BatchID is set (MarkBatch) once the entry has been sent as part of a
	// batch: the entries sharing it are always sent together, under it as
	// the delivery ID, so that a receiver sees a repeat only with the same ID.
	BatchID   string    `json:"batchId,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Observation is a device observation the server holds, kept so that
// notifications are still routed after a restart.
type Observation struct {
	ClientID string `json:"clientId"`
	Path     string `json:"path"`
	Token    []byte `json:"token"`
}

// PSKIdentity is a DTLS pre-shared-key credential for an organisation's
// devices. The key must be usable in a handshake, so it is kept as is.
type PSKIdentity struct {
	Identity       string    `json:"identity"`
	OrganisationID string    `json:"organisationId"`
	Secret         []byte    `json:"secret"`
	CreatedAt      time.Time `json:"createdAt"`
}

// Certificate is a device certificate issued by the server's CA. Its
// private key is handed out once and never stored.
type Certificate struct {
	ID             string    `json:"id"` // serial number, hex
	OrganisationID string    `json:"organisationId"`
	Subject        string    `json:"subject"` // common name: the device's endpoint name
	PEM            string    `json:"pem"`
	NotAfter       time.Time `json:"notAfter"`
	CreatedAt      time.Time `json:"createdAt"`
}

// Store is everything persistent. Every method is safe for concurrent use.
// Get/Delete of a missing item return an error wrapping ErrNotFound;
// Create of an existing one returns an error wrapping ErrConflict.
type Store interface {
	CreateOrganisation(ctx context.Context, o Organisation) error
	GetOrganisation(ctx context.Context, id string) (Organisation, error)
	ListOrganisations(ctx context.Context) ([]Organisation, error)

	CreateAccessKey(ctx context.Context, k AccessKey) error
	GetAccessKey(ctx context.Context, key string) (AccessKey, error)
	// ListAccessKeys returns an organisation's keys ordered by CreatedAt.
	ListAccessKeys(ctx context.Context, organisationID string) ([]AccessKey, error)
	UpdateAccessKey(ctx context.Context, k AccessKey) error
	// DeleteAccessKey deletes the key and every refresh token issued to it.
	DeleteAccessKey(ctx context.Context, key string) error

	PutRefreshToken(ctx context.Context, t RefreshToken) error
	// TakeRefreshToken atomically removes and returns the token (single use).
	TakeRefreshToken(ctx context.Context, hash string) (RefreshToken, error)

	// PutRegistration inserts or replaces the registration with r.ID.
	PutRegistration(ctx context.Context, r lwm2m.Registration) error
	GetRegistration(ctx context.Context, id string) (lwm2m.Registration, error)
	GetRegistrationByEndpoint(ctx context.Context, organisation, endpoint string) (lwm2m.Registration, error)
	// ListRegistrations returns one page ordered by endpoint name, and the total matching count.
	ListRegistrations(ctx context.Context, f RegistrationFilter, offset, limit int) ([]lwm2m.Registration, int, error)
	// ExpiredRegistrations returns registrations whose ExpiresAt is at or before now.
	ExpiredRegistrations(ctx context.Context, now time.Time) ([]lwm2m.Registration, error)
	DeleteRegistration(ctx context.Context, id string) error

	// PutObjectDefinition inserts or replaces an organisation's definition of o.ID.
	PutObjectDefinition(ctx context.Context, organisationID string, o model.Object) error
	// ListObjectDefinitions returns every organisation's definitions, keyed by organisation.
	ListObjectDefinitions(ctx context.Context) (map[string][]model.Object, error)
	DeleteObjectDefinition(ctx context.Context, organisationID string, objectID uint16) error

	CreateSubscription(ctx context.Context, s Subscription) error
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	UpdateSubscription(ctx context.Context, s Subscription) error
	// ListSubscriptions returns matching subscriptions ordered by CreatedAt.
	ListSubscriptions(ctx context.Context, f SubscriptionFilter) ([]Subscription, error)
	// DeleteSubscription deletes the subscription, its stats and its outbox entries.
	DeleteSubscription(ctx context.Context, id string) error
	// AddDeliveryStats adds the counts of d to the subscription's stats and
	// sets LastError / LastSuccess when non-zero in d.
	AddDeliveryStats(ctx context.Context, subscriptionID string, d DeliveryStats) error
	GetDeliveryStats(ctx context.Context, subscriptionID string) (DeliveryStats, error)

	// Enqueue appends notifications to the outbox durably and assigns Seq.
	Enqueue(ctx context.Context, n []Notification) error
	// Pending returns up to limit outbox entries of a subscription in Seq order.
	Pending(ctx context.Context, subscriptionID string, limit int) ([]Notification, error)
	// PendingCount counts a subscription's outbox entries.
	PendingCount(ctx context.Context, subscriptionID string) (int, error)
	// SubscriptionsWithPending lists the IDs of subscriptions that have outbox entries.
	SubscriptionsWithPending(ctx context.Context) ([]string, error)
	// Ack removes a subscription's outbox entries with Seq <= upTo.
	Ack(ctx context.Context, subscriptionID string, upTo int64) error
	// MarkBatch sets batchID on the subscription's outbox entries with
	// Seq <= upTo that have no BatchID yet, durably.
	MarkBatch(ctx context.Context, subscriptionID string, upTo int64, batchID string) error

	// CreateGroup stores a new group; a group of the same organisation with
	// the same Name is ErrConflict.
	CreateGroup(ctx context.Context, g Group) error
	GetGroup(ctx context.Context, id string) (Group, error)
	// UpdateGroup replaces the group's Name and Endpoints (ErrConflict on a name clash).
	UpdateGroup(ctx context.Context, g Group) error
	// ListGroups returns an organisation's groups ordered by CreatedAt, or
	// every organisation's for "".
	ListGroups(ctx context.Context, organisationID string) ([]Group, error)
	DeleteGroup(ctx context.Context, id string) error

	CreatePSKIdentity(ctx context.Context, p PSKIdentity) error
	GetPSKIdentity(ctx context.Context, identity string) (PSKIdentity, error)
	// ListPSKIdentities returns an organisation's identities ordered by CreatedAt.
	ListPSKIdentities(ctx context.Context, organisationID string) ([]PSKIdentity, error)
	DeletePSKIdentity(ctx context.Context, identity string) error

	CreateCertificate(ctx context.Context, c Certificate) error
	GetCertificate(ctx context.Context, id string) (Certificate, error)
	// ListCertificates returns an organisation's certificates ordered by CreatedAt.
	ListCertificates(ctx context.Context, organisationID string) ([]Certificate, error)
	DeleteCertificate(ctx context.Context, id string) error

	// GetSetting and PutSetting keep small server-wide values, such as the
	// CA's certificate and key; GetSetting of an unknown key is ErrNotFound.
	GetSetting(ctx context.Context, key string) ([]byte, error)
	PutSetting(ctx context.Context, key string, value []byte) error
	// DeleteSetting removes a setting; an unknown key is ErrNotFound.
	DeleteSetting(ctx context.Context, key string) error

	PutObservation(ctx context.Context, o Observation) error
	ListObservations(ctx context.Context, clientID string) ([]Observation, error)
	DeleteObservation(ctx context.Context, clientID, path string) error

	Close() error
}
