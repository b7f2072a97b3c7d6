package protocol

import (
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// This file decodes a MessagePack value straight into a Go value with the
// semantics of encoding/json applied to the value's JSON form (what
// msgpackToJSON writes): the same struct tags, the same case-insensitive
// field matching, the same numbers. The common shapes (scalars, structs
// without embedded fields, slices, arrays, string-keyed maps, interface{})
// are decoded directly; everything whose behaviour encoding/json defines
// in detail (json.Unmarshaler, encoding.TextUnmarshaler, []byte, ",string",
// embedded structs, non-string map keys, any value of the wrong kind for
// its target) is transcoded to JSON and handed to the JSON decoder, so it
// behaves exactly as the JSON path by construction.

// decodeMessagePack decodes the single MessagePack value b into v.
func decodeMessagePack(b []byte, v any) error {
	if end, ok := mpCheck(b, 0, 0); !ok || end != len(b) {
		// Malformed, or holding a value JSON cannot (an extension, NaN, a
		// binary map key, nesting deeper than maxDepth): report what
		// Payload.JSON would. Should the transcoder accept it after all, the
		// JSON path decides.
		j, err := msgpackToJSON(nil, b)
		if err != nil {
			return err
		}
		return unmarshalJSON(j, v)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	d := mpDecoder{b: b}
	e := rv.Elem()
	d.value(0, e, planFor(e.Type()))
	return d.err
}

// mpCheck reports whether the value at b[i] is well formed and has a JSON
// form: no extension types, no NaN or infinite floats, map keys that are
// strings or integers, at most maxDepth nested containers (the limits of
// mpToJSON). It returns the index past the value.
func mpCheck(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return i + 1, true
	case c&0xe0 == 0xa0: // fixstr
		end := i + 1 + int(c&0x1f)
		return end, end <= len(b)
	case c == 0xd9 && i+1 < len(b): // str8
		end := i + 2 + int(b[i+1])
		return end, end <= len(b)
	}
	kind, hdr, size, err := mpHeader(b, i)
	if err != nil {
		return 0, false
	}
	switch kind {
	case 's', 'b':
		if len(b)-i-hdr < size {
			return 0, false
		}
		return i + hdr + size, true
	case 'v':
		if len(b)-i < size {
			return 0, false
		}
		switch b[i] {
		case 0xca:
			f := float64(math.Float32frombits(binary.BigEndian.Uint32(b[i+1:])))
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return 0, false
			}
		case 0xcb:
			f := math.Float64frombits(binary.BigEndian.Uint64(b[i+1:]))
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return 0, false
			}
		}
		return i + size, true
	case 'a', 'm':
		if depth >= maxDepth {
			return 0, false
		}
		i += hdr
		n := size
		if kind == 'm' {
			n *= 2
		}
		if n > len(b)-i { // every element takes at least one byte
			return 0, false
		}
		ok := true
		for k := 0; k < size && ok; k++ {
			if kind == 'm' {
				if i >= len(b) {
					return 0, false
				}
				if c := b[i]; !(c&0xe0 == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb || isMpInt(c)) {
					return 0, false
				}
				if i, ok = mpCheck(b, i, depth+1); !ok {
					return 0, false
				}
			}
			i, ok = mpCheck(b, i, depth+1)
		}
		return i, ok
	}
	return 0, false // 'x': extensions have no JSON form
}

// mpDecoder decodes a value mpCheck accepted: every header and length in b
// is known to be in range.
type mpDecoder struct {
	b    []byte
	err  error    // the first error; decoding goes on, as encoding/json's does
	kbuf [24]byte // an integer map key in decimal
}

func (d *mpDecoder) saveError(err error) {
	if d.err == nil && err != nil {
		d.err = err
	}
}

func (d *mpDecoder) skip(i int) int {
	switch c := d.b[i]; {
	case c <= 0x7f || c >= 0xe0:
		return i + 1
	case c&0xe0 == 0xa0:
		return i + 1 + int(c&0x1f)
	case c == 0xd9:
		return i + 2 + int(d.b[i+1])
	}
	end, _ := mpSkip(d.b, i)
	return end
}

// delegate decodes the value at b[i] into the addressable v through its
// JSON form and the JSON decoder.
func (d *mpDecoder) delegate(i int, v reflect.Value) int {
	end := d.skip(i)
	j, err := msgpackToJSON(nil, d.b[i:end])
	if err == nil {
		err = unmarshalJSON(j, v.Addr().Interface())
	}
	d.saveError(err)
	return end
}

// value decodes the value at b[i] into the settable v, whose type's plan is
// p, and returns the index past it.
func (d *mpDecoder) value(i int, v reflect.Value, p *mpPlan) int {
	if p.delegate {
		return d.delegate(i, v)
	}
	kind := p.kind
	if kind == reflect.Interface && !v.IsNil() {
		// encoding/json decodes into a non-nil pointer held by an
		// interface; leave those rules to it.
		if e := v.Elem(); e.Kind() == reflect.Pointer && !e.IsNil() {
			return d.delegate(i, v)
		}
	}
	c := d.b[i]
	if c == 0xc0 { // null
		switch kind {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			v.SetZero()
		}
		return i + 1
	}
	switch kind {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.value(i, v.Elem(), p.elemPlan())
	case reflect.Interface:
		x, end := d.anyValue(i)
		if x == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(x))
		}
		return end
	case reflect.Bool:
		if c == 0xc2 || c == 0xc3 {
			v.SetBool(c == 0xc3)
			return i + 1
		}
	case reflect.String:
		if s, end, ok := d.str(i); ok {
			v.SetString(s)
			return end
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n, neg, end, ok := mpInt(d.b, i); ok && (neg || n <= math.MaxInt64) && !v.OverflowInt(int64(n)) {
			v.SetInt(int64(n))
			return end
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if n, neg, end, ok := mpInt(d.b, i); ok && !neg && !v.OverflowUint(n) {
			v.SetUint(n)
			return end
		}
	case reflect.Float32, reflect.Float64:
		if f, end, ok := d.float(i, kind == reflect.Float32); ok {
			v.SetFloat(f)
			return end
		}
	case reflect.Struct:
		if k, hdr, n, _ := mpHeader(d.b, i); k == 'm' {
			return d.object(i+hdr, n, v, p)
		}
	case reflect.Map:
		if k, hdr, n, _ := mpHeader(d.b, i); k == 'm' {
			return d.mapValue(i+hdr, n, v, p)
		}
	case reflect.Slice, reflect.Array:
		if k, hdr, n, _ := mpHeader(d.b, i); k == 'a' {
			return d.array(i+hdr, n, v, p)
		}
	}
	// A value of another kind than the target's, or a number the direct
	// path does not convert exactly as encoding/json parses its decimal
	// form: the JSON decoder reports or converts it.
	return d.delegate(i, v)
}

// mpInt reads the integer at b[i] as its magnitude n and sign (an int64
// value v is n = uint64(v) when neg); ok is false when it is no integer.
func mpInt(b []byte, i int) (n uint64, neg bool, end int, ok bool) {
	c := b[i]
	switch {
	case c <= 0x7f:
		return uint64(c), false, i + 1, true
	case c >= 0xe0:
		return uint64(int64(int8(c))), true, i + 1, true
	}
	switch c {
	case 0xcc:
		return uint64(b[i+1]), false, i + 2, true
	case 0xcd:
		return uint64(binary.BigEndian.Uint16(b[i+1:])), false, i + 3, true
	case 0xce:
		return uint64(binary.BigEndian.Uint32(b[i+1:])), false, i + 5, true
	case 0xcf:
		return binary.BigEndian.Uint64(b[i+1:]), false, i + 9, true
	case 0xd0:
		x := int64(int8(b[i+1]))
		return uint64(x), x < 0, i + 2, true
	case 0xd1:
		x := int64(int16(binary.BigEndian.Uint16(b[i+1:])))
		return uint64(x), x < 0, i + 3, true
	case 0xd2:
		x := int64(int32(binary.BigEndian.Uint32(b[i+1:])))
		return uint64(x), x < 0, i + 5, true
	case 0xd3:
		x := int64(binary.BigEndian.Uint64(b[i+1:]))
		return uint64(x), x < 0, i + 9, true
	}
	return 0, false, 0, false
}

// float reads the number at b[i] as encoding/json would parse its JSON
// form into a float32 (f32) or float64, when that is exact without the
// decimal text; ok is false otherwise.
func (d *mpDecoder) float(i int, f32 bool) (float64, int, bool) {
	b := d.b
	if n, neg, end, ok := mpInt(b, i); ok {
		// Integers up to 2^53 convert exactly to float64 and then round
		// once to float32, as ParseFloat rounds the decimal.
		var f float64
		switch {
		case neg && int64(n) >= -1<<53:
			f = float64(int64(n))
		case !neg && n <= 1<<53:
			f = float64(n)
		default:
			return 0, 0, false
		}
		if f32 {
			f = float64(float32(f))
		}
		return f, end, true
	}
	switch b[i] {
	case 0xca:
		// The JSON form is the shortest decimal that rounds back to this
		// float32; as a float64 it is another number.
		if f32 {
			return float64(math.Float32frombits(binary.BigEndian.Uint32(b[i+1:]))), i + 5, true
		}
	case 0xcb:
		// The shortest decimal of a float64 parses back to it exactly.
		if !f32 {
			return math.Float64frombits(binary.BigEndian.Uint64(b[i+1:])), i + 9, true
		}
	}
	return 0, 0, false
}

// str reads the str or bin value at b[i] as the string its JSON form
// decodes to: invalid UTF-8 becomes U+FFFD as in encoding/json, bin its
// base64 text.
func (d *mpDecoder) str(i int) (string, int, bool) {
	kind, raw, end := d.span(i)
	switch kind {
	case 's':
		if utf8.Valid(raw) {
			return string(raw), end, true
		}
		var s string
		d.saveError(json.Unmarshal(appendJSONString(nil, raw), &s))
		return s, end, true
	case 'b':
		return base64.StdEncoding.EncodeToString(raw), end, true
	}
	return "", 0, false
}

// span returns the kind of the value at b[i] (see mpHeader) and, for a
// str or bin, its bytes and the index past it.
func (d *mpDecoder) span(i int) (kind byte, raw []byte, end int) {
	b := d.b
	switch c := b[i]; {
	case c&0xe0 == 0xa0:
		end = i + 1 + int(c&0x1f)
		return 's', b[i+1 : end], end
	case c == 0xd9:
		end = i + 2 + int(b[i+1])
		return 's', b[i+2 : end], end
	}
	kind, hdr, size, _ := mpHeader(b, i)
	if kind == 's' || kind == 'b' {
		raw, end = b[i+hdr:i+hdr+size], i+hdr+size
	}
	return kind, raw, end
}

// key reads the map key at b[i] (a string or an integer, as mpCheck made
// sure) as the JSON object key it becomes. The result may alias b or d.kbuf.
func (d *mpDecoder) key(i int) ([]byte, int) {
	if kind, raw, end := d.span(i); kind == 's' {
		if utf8.Valid(raw) {
			return raw, end
		}
		s, end, _ := d.str(i)
		return []byte(s), end
	}
	n, neg, end, _ := mpInt(d.b, i)
	if neg {
		return strconv.AppendInt(d.kbuf[:0], int64(n), 10), end
	}
	return strconv.AppendUint(d.kbuf[:0], n, 10), end
}

func (d *mpDecoder) object(i, n int, v reflect.Value, p *mpPlan) int {
	for ; n > 0; n-- {
		var key []byte
		key, i = d.key(i)
		if f := p.field(key); f != nil {
			first := d.err == nil
			i = d.value(i, v.Field(f.index), f.planFor(v.Type()))
			if te, ok := d.err.(*json.UnmarshalTypeError); ok && first {
				// Name the field as encoding/json does: the path of JSON
				// names from the outermost struct, the innermost struct.
				if te.Struct == "" {
					te.Struct = v.Type().Name()
				}
				if te.Field == "" {
					te.Field = f.name
				} else {
					te.Field = f.name + "." + te.Field
				}
			}
		} else {
			i = d.skip(i)
		}
	}
	return i
}

func (d *mpDecoder) mapValue(i, n int, v reflect.Value, p *mpPlan) int {
	t := v.Type()
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, n))
	}
	kt := t.Key()
	elem := reflect.New(t.Elem()).Elem()
	ep := p.elemPlan()
	for k := 0; k < n; k++ {
		var key []byte
		key, i = d.key(i)
		kv := reflect.New(kt).Elem()
		kv.SetString(string(key))
		if k > 0 {
			elem.SetZero()
		}
		i = d.value(i, elem, ep)
		v.SetMapIndex(kv, elem)
	}
	return i
}

// array follows encoding/json: a slice is grown and truncated to n, a
// fixed-size array keeps its first n elements and zeroes the rest.
func (d *mpDecoder) array(i, n int, v reflect.Value, p *mpPlan) int {
	isSlice := p.kind == reflect.Slice
	ep := p.elemPlan()
	k := 0
	for ; k < n; k++ {
		if isSlice {
			if k >= v.Cap() {
				v.Grow(1)
			}
			if k >= v.Len() {
				v.SetLen(k + 1)
			}
		}
		if k < v.Len() {
			i = d.value(i, v.Index(k), ep)
		} else {
			i = d.skip(i)
		}
	}
	if k < v.Len() {
		if isSlice {
			v.SetLen(k)
		} else {
			for ; k < v.Len(); k++ {
				v.Index(k).SetZero()
			}
		}
	}
	if n == 0 && isSlice {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	}
	return i
}

// anyValue reads the value at b[i] as encoding/json decodes its JSON form
// into an interface{}: nil, bool, float64, string, []any, map[string]any.
func (d *mpDecoder) anyValue(i int) (any, int) {
	b := d.b
	kind, hdr, size, _ := mpHeader(b, i)
	switch kind {
	case 's', 'b':
		s, end, _ := d.str(i)
		return s, end
	case 'a':
		i += hdr
		a := make([]any, size)
		for k := range a {
			a[k], i = d.anyValue(i)
		}
		return a, i
	case 'm':
		i += hdr
		m := make(map[string]any, size)
		for ; size > 0; size-- {
			var key []byte
			key, i = d.key(i)
			ks := string(key)
			m[ks], i = d.anyValue(i)
		}
		return m, i
	}
	switch c := b[i]; c {
	case 0xc0:
		return nil, i + 1
	case 0xc2, 0xc3:
		return c == 0xc3, i + 1
	}
	if f, end, ok := d.float(i, false); ok {
		return f, end
	}
	// A large integer or a float32: parse the decimal JSON would hold.
	end := d.skip(i)
	j, _ := msgpackToJSON(d.kbuf[:0], b[i:end])
	f, err := strconv.ParseFloat(string(j), 64)
	d.saveError(err)
	return f, end
}

// mpPlan is what decoding into one Go type needs, computed once per type.
// Plans of element and field types are looked up on first use, so
// recursive types need no special care.
type mpPlan struct {
	typ  reflect.Type
	kind reflect.Kind
	// delegate: values of this type go through the JSON decoder.
	delegate bool
	elem     atomic.Pointer[mpPlan] // of typ.Elem(), once looked up
	// For structs: the fields by JSON name in field order, and for structs
	// with many fields, their indexes in fields by name and by folded name.
	fields        []mpField
	exact, folded map[string]int
}

type mpField struct {
	name   string // the JSON name
	folded string // appendFoldedName(name)
	index  int    // in the struct
	plan   atomic.Pointer[mpPlan]
}

func (f *mpField) planFor(st reflect.Type) *mpPlan {
	if p := f.plan.Load(); p != nil {
		return p
	}
	p := planFor(st.Field(f.index).Type)
	f.plan.Store(p)
	return p
}

func (p *mpPlan) elemPlan() *mpPlan {
	if e := p.elem.Load(); e != nil {
		return e
	}
	e := planFor(p.typ.Elem())
	p.elem.Store(e)
	return e
}

// fieldMapMin is the number of fields from which a struct's fields are
// found through maps rather than by a scan.
const fieldMapMin = 12

// field finds the struct field a JSON object key sets, as encoding/json
// does: the field with exactly that name, else the first field whose name
// matches it case-insensitively (see appendFoldedName); nil for none.
func (p *mpPlan) field(key []byte) *mpField {
	if p.exact != nil {
		if k, ok := p.exact[string(key)]; ok {
			return &p.fields[k]
		}
		var buf [32]byte
		if k, ok := p.folded[string(appendFoldedName(buf[:0], key))]; ok {
			return &p.fields[k]
		}
		return nil
	}
	for k := range p.fields {
		if p.fields[k].name == string(key) {
			return &p.fields[k]
		}
	}
	ascii := true
	for _, c := range key {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// An ASCII key folds to itself upper-cased.
	scan:
		for k := range p.fields {
			f := p.fields[k].folded
			if len(f) != len(key) {
				continue
			}
			for j, c := range key {
				if 'a' <= c && c <= 'z' {
					c -= 'a' - 'A'
				}
				if c != f[j] {
					continue scan
				}
			}
			return &p.fields[k]
		}
		return nil
	}
	var buf [32]byte
	folded := appendFoldedName(buf[:0], key)
	for k := range p.fields {
		if p.fields[k].folded == string(folded) {
			return &p.fields[k]
		}
	}
	return nil
}

// mpPlans caches an immutable *mpPlan per reflect.Type, as encoding/json
// caches its field lists.
var mpPlans sync.Map

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func planFor(t reflect.Type) *mpPlan {
	if p, ok := mpPlans.Load(t); ok {
		return p.(*mpPlan)
	}
	p, _ := mpPlans.LoadOrStore(t, newPlan(t))
	return p.(*mpPlan)
}

func newPlan(t reflect.Type) *mpPlan {
	p := &mpPlan{typ: t, kind: t.Kind()}
	if pt := reflect.PointerTo(t); pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		p.delegate = true
		return p
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Pointer, reflect.Array,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return p
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return p
		}
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 { // []byte is base64 in JSON
			return p
		}
	case reflect.Map:
		if kt := t.Key(); kt.Kind() == reflect.String && !reflect.PointerTo(kt).Implements(textUnmarshalerType) {
			return p
		}
	case reflect.Struct:
		if structPlan(p) {
			return p
		}
	}
	p.delegate = true
	return p
}

// structPlan lists p.typ's fields by JSON name as encoding/json does for a
// struct without embedded fields: exported fields, named by their `json`
// tag when it is a valid name, skipped with "-"; of several fields with one
// name, the only tagged one wins, otherwise none does. It reports false for
// structs with embedded fields or ",string" options, which are left to the
// JSON decoder.
func structPlan(p *mpPlan) bool {
	t := p.typ
	type field struct {
		name   string
		index  int
		tagged bool
	}
	var fields []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			return false
		}
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		for opts != "" {
			var o string
			o, opts, _ = strings.Cut(opts, ",")
			if o == "string" {
				return false
			}
		}
		if !validTagName(name) {
			name = ""
		}
		f := field{name: name, index: i, tagged: name != ""}
		if !f.tagged {
			f.name = sf.Name
		}
		fields = append(fields, f)
	}
	byName := make(map[string][]field, len(fields))
	for _, f := range fields {
		byName[f.name] = append(byName[f.name], f)
	}
	p.fields = make([]mpField, 0, len(fields))
	for _, f := range fields { // in field order: the first fold wins
		if same := byName[f.name]; len(same) > 1 {
			// Dominance among fields at one depth: exactly one tagged.
			tagged := 0
			for _, g := range same {
				if g.tagged {
					tagged++
				}
			}
			if tagged != 1 || !f.tagged {
				continue
			}
		}
		p.fields = append(p.fields, mpField{name: f.name, folded: string(appendFoldedName(nil, []byte(f.name))), index: f.index})
	}
	if len(p.fields) >= fieldMapMin {
		p.exact = make(map[string]int, len(p.fields))
		p.folded = make(map[string]int, len(p.fields))
		for k := range p.fields {
			f := &p.fields[k]
			p.exact[f.name] = k
			if _, ok := p.folded[f.folded]; !ok {
				p.folded[f.folded] = k
			}
		}
	}
	return true
}

// validTagName reports whether encoding/json accepts s as a field name
// from a tag: letters, digits and some punctuation.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			return false
		}
	}
	return true
}

// appendFoldedName appends a form of name such that two names have the
// same form exactly when encoding/json matches them case-insensitively:
// ASCII letters upper-cased, other runes mapped to the smallest rune of
// their Unicode simple-folding orbit.
func appendFoldedName(dst, name []byte) []byte {
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(name[i:])
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		dst = utf8.AppendRune(dst, least)
		i += n
	}
	return dst
}
