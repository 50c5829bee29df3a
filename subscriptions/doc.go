// Package subscriptions is the webhook subscription engine: it validates and
// keeps subscriptions, turns device events (registration lifecycle and
// observation notifications) into notification items, filters observations
// per subscription, and delivers the items to the subscribers' webhooks.
//
// # Levels and types
//
// Organisation-level subscriptions (ClientID "") receive the lifecycle
// events (ClientConnected, ClientDisconnected, ClientUpdated,
// ClientConnectionExpired) of every client of the organisation; client-level
// ones those of one client. Observation subscriptions are on an object
// instance ("/o/i") or a resource ("/o/i/r") of one client.
//
// # Pre-subscriptions, criteria and groups
//
// Organisation-level subscriptions apply to every client of the
// organisation, or, with Criteria, to the clients that match all of: Group
// (the endpoint is a member of the organisation's group of that name;
// membership is by endpoint name, kept in memory), Endpoints (the endpoint
// name or the device's serial number is listed), Make / Model /
// FirmwareVersion (object 3 resources 0, 1 and 3). After every Register the
// engine reads /3/0 in the background and records the identity on the
// registration (Device.SetDeviceInfo); an Update reads /3/0/3 again when a
// subscription of the organisation selects by firmware version, or /3/0
// when the identity is still unknown. Config.SkipDeviceInfo turns the reads
// off (criteria that need the identity then never match).
//
// Lifecycle subscriptions are matched at each event; one whose criteria
// need the identity not read yet (ClientConnected after a Register) is
// delivered once the read is done, if it matches. Organisation-level
// Observation subscriptions (Path set, ClientID empty) are attached to
// every matching client, sharing its device observation of the path like
// client-level subscriptions (with their own filter state per client).
// They are applied: at once to the online clients when created (unless
// ApplyLater), at every Register and Update (attaching new matches and
// detaching clients that stopped matching, e.g. after a firmware change),
// and when a group's membership changes, to the online clients concerned.
//
// # Device observations
//
// All subscriptions on one (client, path) share one device observation. The
// attributes written to the device (Write-Attributes, before Observe) are
// chosen so that the device notifies at least whenever any of the
// subscriptions would want a notification; the engine then filters per
// subscription:
//
//   - pmin: the smallest pmin when every subscription has one, else none.
//   - pmax: the smallest pmax of the subscriptions that have one.
//   - gt / lt / st: written only when every subscription has at least one of
//     them and the subscriptions that set gt (lt) all agree on its value;
//     st is then the smallest st. Otherwise none is written and the device
//     reports every change. A combination the device would reject (OMA
//     LwM2M Core 5.1.2: lt < gt and lt + 2*st < gt) is not written either.
//
// LwM2M has no way in lwm2m.Attributes to remove an attribute from the
// device, so when the combination loses pmin or st the engine writes 0
// (neutral), and when it loses gt or lt it writes st=0 so that the device
// keeps reporting every change.
//
// # Server-side filtering (per subscription)
//
// Every subscription keeps the values it last delivered and when. A device's
// Observe response is not delivered: it becomes the baseline of the
// subscriptions that have none (new ones, or ones made while the client was
// offline); when an observation is re-established (new registration) it is
// evaluated like a notification for the subscriptions that have a baseline.
// A subscription without a baseline (e.g. after a restart) delivers the next
// notification. For each notification:
//
//   - a change qualifies when, for some record, there is no previous value,
//     or (no gt/lt/st set) the value differs, or |value - last delivered| ≥ st
//     (st = 0: any change), or the value crossed gt (last ≤ gt < value or
//     value ≤ gt < last), or crossed lt (last ≥ lt > value or
//     value ≥ lt > last). gt, lt and st apply to numeric values only; other
//     values qualify when they change. All comparisons are against the last
//     delivered value, so that the application sees every crossing relative
//     to what it last saw.
//   - pmax: when pmax seconds have passed since the last delivery, the
//     notification is delivered even if it does not qualify. pmax is checked
//     when a notification arrives (the device is asked for that pmax), the
//     engine does not poll.
//   - pmin: a qualifying change within pmin of the last delivery is held and
//     delivered when the quiet period ends, as OMA requires of a client
//     ("the notification must be sent immediately that the quiet period
//     expires"). Later notifications during the quiet period replace the held
//     values (per record), so the delivery carries the current state, with the
//     TimeTriggered of the latest.
//
// # Delivery
//
// Each subscription has its own worker, so its notifications are delivered
// in order and a slow receiver delays only its own subscription; at most 8
// requests are in flight per destination (host:port) over all
// subscriptions. Events never wait on HTTP. When several notifications wait
// while a request is in flight, the next request carries up to 100 of them
// (Items, in order). Redirects are not followed (a 3xx is a failure), and
// Config.AllowedDestinations restricts destinations when a subscription is
// made and again when connecting. Any answer but a 2xx is a failure and is retried. DeletionPolicy 0 keeps notifications in a bounded in-memory
// queue (beyond Config.QueueSize they are dropped and counted), retries
// RetryMax times and then drops and counts; such notifications are lost when
// the engine closes. DeletionPolicy 1 writes every notification to the store's
// outbox before the event call returns and retries with capped exponential
// backoff and jitter until a 2xx, the subscription is deleted or the engine
// closes; Start resumes the outboxes after a restart (at-least-once: a
// notification in flight at shutdown is sent again, with the same
// X-Delivery-ID). A durable batch of several notifications is marked in the
// store before it is first sent, so that it is always sent again as the
// same batch under the same ID; a notification that may have been sent
// alone (the head of an outbox resumed after a restart, or one whose single
// attempt failed) stays alone. A receiver therefore sees a notification
// again only under the X-Delivery-ID it first saw it with.
package subscriptions
