package subscriptions

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// Media types and headers of webhook requests.
const (
	ContentTypeJSON = "application/vnd.imgtec.notifications+json"
	ContentTypeXML  = "application/vnd.imgtec.notifications+xml"

	HeaderDeliveryID = "X-Delivery-ID"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the body
	// keyed with the subscription's secret.
	HeaderSignature = "X-Signature"
)

// timeLayout is RFC 3339 in UTC with milliseconds, as TimeTriggered uses.
const timeLayout = "2006-01-02T15:04:05.000Z"

// item is one notification. It is stored (DeletionPolicy 1) and batched
// as JSON; the field order is the one applications see.
type item struct {
	SubscriptionType string `json:"SubscriptionType"`
	TimeTriggered    string `json:"TimeTriggered"`
	Name             string `json:"Name,omitempty"`
	Links            []link `json:"Links"`
	Value            any    `json:"Value,omitempty"`
}

type link struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

func href(base string, segs ...string) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(base, "/"))
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func lifecycleItem(s storage.Subscription, reg lwm2m.Registration, typ string, at time.Time) ([]byte, error) {
	return json.Marshal(item{
		SubscriptionType: typ,
		TimeTriggered:    at.UTC().Format(timeLayout),
		Name:             reg.Endpoint,
		Links: []link{
			{Rel: "subscription", Href: href(s.BaseURL, "subscriptions", s.ID)},
			{Rel: "client", Href: href(s.BaseURL, "clients", reg.ID)},
		},
	})
}

// observationItem is an Observation notification of clientID's values (the
// subscription's own client, or one its criteria matched).
func observationItem(s storage.Subscription, clientID string, p lwm2m.Path, value any, at time.Time) ([]byte, error) {
	obj, inst := strconv.Itoa(int(p.Object)), strconv.Itoa(int(p.Instance))
	return json.Marshal(item{
		SubscriptionType: TypeObservation,
		TimeTriggered:    at.UTC().Format(timeLayout),
		Links: []link{
			{Rel: "subscription", Href: href(s.BaseURL, "subscriptions", s.ID)},
			{Rel: "client", Href: href(s.BaseURL, "clients", clientID)},
			{Rel: "object", Href: href(s.BaseURL, "clients", clientID, "objecttypes", obj, "instances", inst)},
			{Rel: "definition", Href: href(s.BaseURL, "objecttypes", "definitions", obj)},
		},
		Value: value,
	})
}

// defaultRender is used without a Config.Render: values keyed by the
// resource (and resource instance) IDs below the instance.
func defaultRender(_ string, _ lwm2m.Path, recs []lwm2m.Record) any {
	m := make(map[string]any, len(recs))
	for _, r := range recs {
		segs := r.Path.Segments()
		m[strings.Join(segs[min(2, len(segs)):], "/")] = r.Value
	}
	return m
}

// encodeBody builds the {"Items": [...]} document in the subscription's format.
func encodeBody(f format, items [][]byte) ([]byte, string, error) {
	if f == formatXML {
		b, err := xmlBody(items)
		return b, ContentTypeXML, err
	}
	var b bytes.Buffer
	b.WriteString(`{"Items":[`)
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it)
	}
	b.WriteString(`]}`)
	return b.Bytes(), ContentTypeJSON, nil
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// newID returns a random URL-safe identifier (128 bits).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// xmlBody renders the JSON items as
// <Notifications><Items><Notification>...</Notification></Items></Notifications>,
// following the API's XML conventions: field names become elements, Links
// become <Links><Link rel=".." href=".."/></Links>, and an array becomes
// the element repeated.
func xmlBody(items [][]byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<Notifications><Items>")
	for _, it := range items {
		dec := json.NewDecoder(bytes.NewReader(it))
		dec.UseNumber()
		if err := xmlValue(&b, "Notification", dec); err != nil {
			return nil, fmt.Errorf("xml body: %w", err)
		}
	}
	b.WriteString("</Items></Notifications>")
	return b.Bytes(), nil
}

// xmlValue converts the next JSON value of dec into an element named name.
func xmlValue(b *bytes.Buffer, name string, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	name = xmlName(name)
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			b.WriteString("<" + name + ">")
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := kt.(string)
				if err := xmlField(b, key, dec); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // '}'
				return err
			}
			b.WriteString("</" + name + ">")
		case '[':
			for dec.More() {
				if err := xmlValue(b, name, dec); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return err
			}
		default:
			return fmt.Errorf("unexpected %v", t)
		}
	case nil:
		b.WriteString("<" + name + "/>")
	default:
		b.WriteString("<" + name + ">")
		if err := xml.EscapeText(b, []byte(scalarText(t))); err != nil {
			return err
		}
		b.WriteString("</" + name + ">")
	}
	return nil
}

// xmlField writes one object member, handling Links specially.
func xmlField(b *bytes.Buffer, key string, dec *json.Decoder) error {
	if key != "Links" {
		return xmlValue(b, key, dec)
	}
	var links []map[string]any
	if err := dec.Decode(&links); err != nil {
		return err
	}
	b.WriteString("<Links>")
	for _, l := range links {
		b.WriteString("<Link")
		for _, k := range []string{"rel", "href", "type", "title"} {
			if v, ok := l[k]; ok {
				b.WriteString(" " + k + `="`)
				if err := xml.EscapeText(b, []byte(fmt.Sprint(v))); err != nil {
					return err
				}
				b.WriteString(`"`)
			}
		}
		b.WriteString("/>")
	}
	b.WriteString("</Links>")
	return nil
}

func scalarText(t json.Token) string {
	switch v := t.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(t)
}

// xmlName makes a JSON key usable as an element name.
func xmlName(s string) string {
	var b strings.Builder
	for i, r := range s {
		ok := unicode.IsLetter(r) || r == '_' || i > 0 && (unicode.IsDigit(r) || r == '-' || r == '.')
		if !ok {
			if i == 0 && (unicode.IsDigit(r) || r == '-' || r == '.') {
				b.WriteByte('_')
				b.WriteRune(r)
				continue
			}
			r = '_'
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// drain reads and closes a response body so the connection is reused.
func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	_ = r.Close()
}
