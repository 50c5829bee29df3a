// Package codec encodes and decodes LwM2M payloads in every content format
// the server speaks, typed by the object model through an lwm2m.Resolver.
// One file per format; Encode and Decode dispatch on the content format.
package codec
