package subscriptions

import (
	"sync"

	"github.com/deviceserver/deviceserver/storage"
)

// lifecycleIndex keeps the lifecycle subscriptions (ClientConnected,
// ClientUpdated, ClientDisconnected, ClientConnectionExpired) in memory, so
// that a registration event, which the endpoint raises thousands of times a
// second under load, finds its subscribers without querying the store.
//
// It is a write-through cache: the engine changes it only after the store
// write succeeded, holding Engine.subMu across both so that concurrent
// changes reach memory in the order they reached the store. Events only
// read it.
//
// The elements of a slice in byOrg or byClient are never modified once
// stored: a replacement or removal installs a new slice, so a reader may
// keep using what it got after releasing mu.
type lifecycleIndex struct {
	mu       sync.RWMutex
	byOrg    map[indexKey][]storage.Subscription // organisation level, by (organisation, type)
	byClient map[indexKey][]storage.Subscription // client level, by (client ID, type)
	byID     map[string]storage.Subscription
}

// indexKey is (organisation, type) in byOrg and (client ID, type) in byClient.
type indexKey struct{ owner, typ string }

func newLifecycleIndex() *lifecycleIndex {
	return &lifecycleIndex{
		byOrg:    make(map[indexKey][]storage.Subscription),
		byClient: make(map[indexKey][]storage.Subscription),
		byID:     make(map[string]storage.Subscription),
	}
}

// bucket returns the map and key a subscription is filed under.
func (x *lifecycleIndex) bucket(s storage.Subscription) (map[indexKey][]storage.Subscription, indexKey) {
	if s.ClientID == "" {
		return x.byOrg, indexKey{s.OrganisationID, s.Type}
	}
	return x.byClient, indexKey{s.ClientID, s.Type}
}

// put adds s or replaces the subscription with its ID, keeping its place
// so that deliveries keep the creation order the store lists in.
func (x *lifecycleIndex) put(s storage.Subscription) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byID[s.ID]; ok {
		m, k := x.bucket(old)
		if _, nk := x.bucket(s); (old.ClientID == "") == (s.ClientID == "") && k == nk {
			cur := m[k]
			next := make([]storage.Subscription, len(cur))
			for i, c := range cur {
				if c.ID == s.ID {
					c = s
				}
				next[i] = c
			}
			m[k] = next
			x.byID[s.ID] = s
			return
		}
		// Level, owner and type are fixed after creation; should one
		// change all the same, refile the subscription.
		x.removeLocked(old)
	}
	// Appending in place is safe for readers: they never look beyond the
	// length of the slice they got, and writers always extend the latest.
	m, k := x.bucket(s)
	m[k] = append(m[k], s)
	x.byID[s.ID] = s
}

// remove forgets the subscription with id, if indexed.
func (x *lifecycleIndex) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byID[id]; ok {
		x.removeLocked(old)
	}
}

func (x *lifecycleIndex) removeLocked(old storage.Subscription) {
	delete(x.byID, old.ID)
	m, k := x.bucket(old)
	cur := m[k]
	next := make([]storage.Subscription, 0, len(cur))
	for _, c := range cur {
		if c.ID != old.ID {
			next = append(next, c)
		}
	}
	if len(next) == 0 {
		// Drop empty entries: client-level subscriptions come and go with
		// clients, and the map must not grow with every client ever seen.
		delete(m, k)
		return
	}
	m[k] = next
}

// match returns the organisation-level subscriptions of typ in org and the
// client-level ones of typ for clientID. Both may be nil; the caller must
// not modify them.
func (x *lifecycleIndex) match(org, clientID, typ string) (orgLevel, clientLevel []storage.Subscription) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byOrg[indexKey{org, typ}], x.byClient[indexKey{clientID, typ}]
}
