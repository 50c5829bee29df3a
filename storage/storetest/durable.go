package storetest

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/storage"
)

// RunDurable checks that data survives closing and reopening a store: it
// writes one of everything through a store opened on a fresh directory,
// closes it, reopens the same directory and reads everything back. It then
// marks another outbox batch and acknowledges an earlier one, and checks
// the marks after a second reopen; and it acknowledges everything and
// checks after a third that outbox sequence numbers keep increasing.
// RunDurable closes every store open returns.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) storage.Store) {
	ctx := t.Context()
	dir := t.TempDir()
	now := t0()

	org := storage.Organisation{ID: "org-a", Name: "Acme", Admin: true, CreatedAt: now}
	key := storage.AccessKey{Key: "key-1", Name: "ci", OrganisationID: org.ID, SecretHash: []byte{1, 2, 3, 0}, CreatedAt: now.Add(time.Second)}
	kept := storage.RefreshToken{Hash: "tok-kept", Key: key.Key, OrganisationID: org.ID, ExpiresAt: now.Add(time.Hour)}
	taken := storage.RefreshToken{Hash: "tok-taken", Key: key.Key, OrganisationID: org.ID, ExpiresAt: now.Add(time.Hour)}
	regs := []lwm2m.Registration{
		registration("reg-1", org.ID, "dev-1", now.Add(-time.Minute)), // expired
		registration("reg-2", org.ID, "dev-2", now.Add(time.Minute)),
		registration("reg-3", "org-b", "dev-1", now.Add(time.Hour)),
	}
	def := objectDefinition(10241, "Custom Thing")
	subs := []storage.Subscription{
		subscription("sub-org", org.ID, "", "ClientConnected", "", now),
		subscription("sub-obs", org.ID, "reg-2", "Observation", "/3303/0/5700", now.Add(time.Second)),
	}
	subs[1].CompatID = "m2m-1"
	groups := []storage.Group{
		group("grp-1", org.ID, "fleet", now, "dev-2", "dev-9"),
		group("grp-2", org.ID, "gone", now.Add(time.Second), "dev-1"),
	}
	stats := storage.DeliveryStats{Delivered: 12, Dropped: 3, LastError: "timeout", LastSuccess: now.Add(time.Minute)}
	obs := storage.Observation{ClientID: "reg-2", Path: "/3303/0/5700", Token: []byte{0xca, 0xfe}}
	psk := pskIdentity("psk-1", org.ID, now)
	cert := certificate("0a1b", org.ID, "dev-1", now)
	setting := []byte("ca pem\x00")
	var outbox []storage.Notification
	for i := range 10 {
		outbox = append(outbox, notification(subs[i%2].ID, fmt.Sprint("d", i), i))
	}

	s := open(t, dir)
	must(t, s.CreateOrganisation(ctx, org), "CreateOrganisation")
	must(t, s.CreateAccessKey(ctx, key), "CreateAccessKey")
	must(t, s.PutRefreshToken(ctx, kept), "PutRefreshToken")
	must(t, s.PutRefreshToken(ctx, taken), "PutRefreshToken")
	_, err := s.TakeRefreshToken(ctx, taken.Hash)
	must(t, err, "TakeRefreshToken")
	for _, r := range regs {
		must(t, s.PutRegistration(ctx, r), "PutRegistration(%s)", r.ID)
	}
	must(t, s.PutObjectDefinition(ctx, org.ID, def), "PutObjectDefinition")
	for _, sub := range subs {
		must(t, s.CreateSubscription(ctx, sub), "CreateSubscription(%s)", sub.ID)
	}
	must(t, s.AddDeliveryStats(ctx, subs[0].ID, stats), "AddDeliveryStats")
	must(t, s.PutObservation(ctx, obs), "PutObservation")
	must(t, s.CreatePSKIdentity(ctx, psk), "CreatePSKIdentity")
	must(t, s.CreateCertificate(ctx, cert), "CreateCertificate")
	must(t, s.PutSetting(ctx, "ca", setting), "PutSetting")
	must(t, s.PutSetting(ctx, "deleted", setting), "PutSetting(deleted)")
	must(t, s.DeleteSetting(ctx, "deleted"), "DeleteSetting")
	for _, g := range groups {
		must(t, s.CreateGroup(ctx, g), "CreateGroup(%s)", g.ID)
	}
	groups[0].Name, groups[0].Endpoints = "fleet-1", []string{"dev-1", "dev-2"}
	must(t, s.UpdateGroup(ctx, groups[0]), "UpdateGroup")
	must(t, s.DeleteGroup(ctx, groups[1].ID), "DeleteGroup")
	must(t, s.Enqueue(ctx, outbox[:6]), "Enqueue")
	must(t, s.Enqueue(ctx, outbox[6:]), "Enqueue")
	// Acknowledge the first two of sub-org (outbox[0] and [2]).
	must(t, s.Ack(ctx, subs[0].ID, outbox[2].Seq), "Ack")
	// Send sub-org's next two and sub-obs's first three in batches.
	must(t, s.MarkBatch(ctx, subs[0].ID, outbox[6].Seq, "batch-org"), "MarkBatch(%s)", subs[0].ID)
	must(t, s.MarkBatch(ctx, subs[1].ID, outbox[5].Seq, "batch-obs-1"), "MarkBatch(%s)", subs[1].ID)
	for _, i := range []int{4, 6} {
		outbox[i].BatchID = "batch-org"
	}
	for _, i := range []int{1, 3, 5} {
		outbox[i].BatchID = "batch-obs-1"
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	got, err := s.GetOrganisation(ctx, org.ID)
	must(t, err, "GetOrganisation after reopen")
	wantEqual(t, got, org, "GetOrganisation after reopen")
	gotKey, err := s.GetAccessKey(ctx, key.Key)
	must(t, err, "GetAccessKey after reopen")
	wantEqual(t, gotKey, key, "GetAccessKey after reopen")
	_, err = s.TakeRefreshToken(ctx, taken.Hash)
	wantErr(t, err, storage.ErrNotFound, "TakeRefreshToken of a token taken before reopen")
	gotTok, err := s.TakeRefreshToken(ctx, kept.Hash)
	must(t, err, "TakeRefreshToken after reopen")
	wantEqual(t, gotTok, kept, "TakeRefreshToken after reopen")
	for _, r := range regs {
		got, err := s.GetRegistration(ctx, r.ID)
		must(t, err, "GetRegistration(%s) after reopen", r.ID)
		wantEqual(t, got, r, "GetRegistration(%s) after reopen", r.ID)
	}
	expired, err := s.ExpiredRegistrations(ctx, now)
	must(t, err, "ExpiredRegistrations after reopen")
	wantEqual(t, ids(expired, regID), []string{"reg-1"}, "ExpiredRegistrations after reopen")
	online, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: org.ID, Online: ptr(true), Now: now}, 0, 10)
	must(t, err, "ListRegistrations after reopen")
	if total != 1 || len(online) != 1 || online[0].ID != "reg-2" {
		t.Errorf("online registrations after reopen = %v (total %d), want [reg-2]", ids(online, regID), total)
	}
	defs, err := s.ListObjectDefinitions(ctx)
	must(t, err, "ListObjectDefinitions after reopen")
	wantEqual(t, defs, map[string][]model.Object{org.ID: {def}}, "ListObjectDefinitions after reopen")
	list, err := s.ListSubscriptions(ctx, storage.SubscriptionFilter{})
	must(t, err, "ListSubscriptions after reopen")
	wantEqual(t, list, subs, "ListSubscriptions after reopen")
	gotStats, err := s.GetDeliveryStats(ctx, subs[0].ID)
	must(t, err, "GetDeliveryStats after reopen")
	wantEqual(t, gotStats, stats, "GetDeliveryStats after reopen")
	gotObs, err := s.ListObservations(ctx, obs.ClientID)
	must(t, err, "ListObservations after reopen")
	wantEqual(t, gotObs, []storage.Observation{obs}, "ListObservations after reopen")
	gotPSK, err := s.GetPSKIdentity(ctx, psk.Identity)
	must(t, err, "GetPSKIdentity after reopen")
	wantEqual(t, gotPSK, psk, "GetPSKIdentity after reopen")
	gotCert, err := s.GetCertificate(ctx, cert.ID)
	must(t, err, "GetCertificate after reopen")
	wantEqual(t, gotCert, cert, "GetCertificate after reopen")
	gotSetting, err := s.GetSetting(ctx, "ca")
	must(t, err, "GetSetting after reopen")
	wantEqual(t, gotSetting, setting, "GetSetting after reopen")
	_, err = s.GetSetting(ctx, "deleted")
	wantErr(t, err, storage.ErrNotFound, "GetSetting of a setting deleted before reopen")
	compat, err := s.ListSubscriptions(ctx, storage.SubscriptionFilter{CompatID: "*"})
	must(t, err, "ListSubscriptions(CompatID *) after reopen")
	wantEqual(t, compat, subs[1:], "ListSubscriptions(CompatID *) after reopen")
	gotGroups, err := s.ListGroups(ctx, "")
	must(t, err, "ListGroups after reopen")
	wantEqual(t, gotGroups, groups[:1], "ListGroups after reopen")
	members, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: org.ID, Group: "fleet-1"}, 0, 10)
	must(t, err, "ListRegistrations(group) after reopen")
	if total != 2 || len(members) != 2 || members[0].ID != "reg-1" || members[1].ID != "reg-2" {
		t.Errorf("group members after reopen = %v (total %d), want [reg-1 reg-2]", ids(members, regID), total)
	}
	for _, name := range []string{"fleet", "gone"} {
		gone, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: org.ID, Group: name}, 0, 10)
		must(t, err, "ListRegistrations(group %s) after reopen", name)
		if total != 0 || len(gone) != 0 {
			t.Errorf("members of group %q (renamed or deleted before reopen) = %v (total %d), want none", name, ids(gone, regID), total)
		}
	}

	wantPending := map[string][]storage.Notification{
		subs[0].ID: {outbox[4], outbox[6], outbox[8]},
		subs[1].ID: {outbox[1], outbox[3], outbox[5], outbox[7], outbox[9]},
	}
	for sub, want := range wantPending {
		p, err := s.Pending(ctx, sub, 100)
		must(t, err, "Pending(%s) after reopen", sub)
		wantEqual(t, p, want, "Pending(%s) after reopen", sub)
	}
	with, err := s.SubscriptionsWithPending(ctx)
	must(t, err, "SubscriptionsWithPending after reopen")
	sort.Strings(with)
	wantEqual(t, with, []string{subs[1].ID, subs[0].ID}, "SubscriptionsWithPending after reopen")

	// A second batch of sub-obs leaves the first one's marks alone, and an
	// Ack of the first batch removes just it.
	must(t, s.MarkBatch(ctx, subs[1].ID, outbox[9].Seq, "batch-obs-2"), "MarkBatch(%s) after reopen", subs[1].ID)
	outbox[7].BatchID, outbox[9].BatchID = "batch-obs-2", "batch-obs-2"
	must(t, s.Ack(ctx, subs[1].ID, outbox[5].Seq), "Ack(%s) of the first batch after reopen", subs[1].ID)
	p, err := s.Pending(ctx, subs[1].ID, 100)
	must(t, err, "Pending(%s) after the second batch", subs[1].ID)
	wantEqual(t, p, []storage.Notification{outbox[7], outbox[9]}, "Pending(%s) after the second batch", subs[1].ID)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dir)
	p, err = s.Pending(ctx, subs[1].ID, 100)
	must(t, err, "Pending(%s) after the second reopen", subs[1].ID)
	wantEqual(t, p, []storage.Notification{outbox[7], outbox[9]}, "Pending(%s) after the second reopen", subs[1].ID)

	// Acknowledge everything, then check after another reopen that Seq
	// does not restart.
	for sub := range wantPending {
		must(t, s.Ack(ctx, sub, outbox[len(outbox)-1].Seq), "Ack(%s)", sub)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dir)
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	next := []storage.Notification{notification(subs[0].ID, "after", 99)}
	must(t, s.Enqueue(ctx, next), "Enqueue after third reopen")
	if next[0].Seq <= outbox[len(outbox)-1].Seq {
		t.Errorf("Seq after reopen with an empty outbox = %d, want more than %d", next[0].Seq, outbox[len(outbox)-1].Seq)
	}
	p, err = s.Pending(ctx, subs[0].ID, 100)
	must(t, err, "Pending after third reopen")
	wantEqual(t, p, next, "Pending after third reopen")
}
