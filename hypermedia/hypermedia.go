// Package hypermedia builds the link-rich representations of the REST API:
// links, absolute hrefs, paging, and LwM2M instances as named fields.
package hypermedia

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Link is one hypermedia link of a representation.
type Link struct {
	Rel   string `json:"rel" xml:"rel,attr"`
	Href  string `json:"href" xml:"href,attr"`
	Type  string `json:"type,omitempty" xml:"type,attr,omitempty"`
	Title string `json:"title,omitempty" xml:"title,attr,omitempty"`
}

// Links is the Links member every representation carries.
type Links []Link

// Add appends a link and returns the list, for chaining.
func (l Links) Add(rel, href, typ string) Links {
	return append(l, Link{Rel: rel, Href: href, Type: typ})
}

// BaseURL returns scheme://host of the API as the request saw it. With
// trustProxy, X-Forwarded-Proto and X-Forwarded-Host override what the
// connection says, for servers behind a reverse proxy.
func BaseURL(r *http.Request, trustProxy bool) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if trustProxy {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	return scheme + "://" + host
}

// firstValue takes the first element of a comma-separated proxy header.
func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// Paging limits.
const (
	DefaultPageSize = 10
	MaxPageSize     = 1000
)

// PageInfo describes one page of a list.
type PageInfo struct {
	TotalCount int   `json:"TotalCount"`
	ItemsCount int   `json:"ItemsCount"`
	StartIndex int   `json:"StartIndex"`
	Links      Links `json:"Links,omitempty"`
}

// PageRequest reads startIndex and pageSize; invalid values are reported
// with the offending parameter's name.
func PageRequest(q url.Values) (start, size int, field string, err error) {
	start, size = 0, DefaultPageSize
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, "startIndex", fmt.Errorf("startIndex must be a non-negative integer")
		}
		start = n
	}
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return 0, 0, "pageSize", fmt.Errorf("pageSize must be an integer from 1 to %d", MaxPageSize)
		}
		size = n
	}
	return start, size, "", nil
}

// NewPageInfo builds the PageInfo of a page, with first/previous/next/last
// links on self (the list URL, its other query parameters kept).
func NewPageInfo(self *url.URL, start, size, items, total int) PageInfo {
	pi := PageInfo{TotalCount: total, ItemsCount: items, StartIndex: start}
	link := func(rel string, at int) {
		u := *self
		q := u.Query()
		q.Set("startIndex", strconv.Itoa(at))
		q.Set("pageSize", strconv.Itoa(size))
		u.RawQuery = q.Encode()
		pi.Links = append(pi.Links, Link{Rel: rel, Href: u.String()})
	}
	if total == 0 {
		return pi
	}
	last := ((total - 1) / size) * size
	link("first", 0)
	if start > 0 {
		prev := start - size
		if prev < 0 {
			prev = 0
		}
		link("previous", prev)
	}
	if start < total-size { // not start+size, which overflows for a huge startIndex
		link("next", start+size)
	}
	link("last", last)
	return pi
}
