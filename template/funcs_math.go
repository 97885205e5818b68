package template

import (
	"fmt"
	"reflect"
)

// The math functions take their operands in pipe order (add 1 2 is 2+1,
// subtract 1 5 is 5-1) and keep consul-template's result types: int64 for
// two signed or mixed integers, uint64 for two unsigned, float64 as soon as
// a float is involved.

type numClass int

const (
	notNumber numClass = iota
	signed
	unsigned
	float
)

func classOf(v reflect.Value) numClass {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return signed
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return unsigned
	case reflect.Float32, reflect.Float64:
		return float
	}
	return notNumber
}

func asInt(v reflect.Value) int64 {
	if classOf(v) == unsigned {
		return int64(v.Uint())
	}
	return v.Int()
}

func asFloat(v reflect.Value) float64 {
	switch classOf(v) {
	case signed:
		return float64(v.Int())
	case unsigned:
		return float64(v.Uint())
	}
	return v.Float()
}

// arith computes a op b; floats is nil for modulo, which refuses them.
func arith(name string, b, a any, ints func(x, y int64) int64, uints func(x, y uint64) uint64, floats func(x, y float64) float64) (any, error) {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	ac, bc := classOf(av), classOf(bv)
	if ac == notNumber || (ac == float && floats == nil) {
		return nil, fmt.Errorf("%s: unknown type for %q (%T)", name, av, a)
	}
	if bc == notNumber || (bc == float && floats == nil) {
		return nil, fmt.Errorf("%s: unknown type for %q (%T)", name, bv, b)
	}
	switch {
	case ac == float || bc == float:
		return floats(asFloat(av), asFloat(bv)), nil
	case ac == unsigned && bc == unsigned:
		return uints(av.Uint(), bv.Uint()), nil
	default:
		return ints(asInt(av), asInt(bv)), nil
	}
}

func add(b, a any) (any, error) {
	return arith("add", b, a,
		func(x, y int64) int64 { return x + y },
		func(x, y uint64) uint64 { return x + y },
		func(x, y float64) float64 { return x + y })
}

func subtract(b, a any) (any, error) {
	return arith("subtract", b, a,
		func(x, y int64) int64 { return x - y },
		func(x, y uint64) uint64 { return x - y },
		func(x, y float64) float64 { return x - y })
}

func multiply(b, a any) (any, error) {
	return arith("multiply", b, a,
		func(x, y int64) int64 { return x * y },
		func(x, y uint64) uint64 { return x * y },
		func(x, y float64) float64 { return x * y })
}

// divide panics on an integer division by zero, as consul-template's
// does; text/template turns the panic into an error naming the call.
func divide(b, a any) (any, error) {
	return arith("divide", b, a,
		func(x, y int64) int64 { return x / y },
		func(x, y uint64) uint64 { return x / y },
		func(x, y float64) float64 { return x / y })
}

func modulo(b, a any) (any, error) {
	return arith("modulo", b, a,
		func(x, y int64) int64 { return x % y },
		func(x, y uint64) uint64 { return x % y },
		nil)
}

// native is v as the type consul-template returns it in.
func native(v reflect.Value) any {
	switch classOf(v) {
	case signed:
		return v.Int()
	case unsigned:
		return v.Uint()
	}
	return v.Float()
}

// pick returns a when a is less than b (or greater, for maximum),
// comparing as consul-template does, and the winner in its own type.
func pick(name string, b, a any, aWins func(c int) bool) (any, error) {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	ac, bc := classOf(av), classOf(bv)
	if ac == notNumber {
		return nil, fmt.Errorf("%s: unknown type for %q (%T)", name, av, a)
	}
	if bc == notNumber {
		return nil, fmt.Errorf("%s: unknown type for %q (%T)", name, bv, b)
	}
	var c int
	switch {
	case ac == float || bc == float:
		x, y := asFloat(av), asFloat(bv)
		c = compare(x < y, x > y)
	case ac == unsigned && bc == unsigned:
		x, y := av.Uint(), bv.Uint()
		c = compare(x < y, x > y)
	default:
		x, y := asInt(av), asInt(bv)
		c = compare(x < y, x > y)
	}
	if aWins(c) {
		return native(av), nil
	}
	return native(bv), nil
}

func compare(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

func minimum(b, a any) (any, error) { return pick("minimum", b, a, func(c int) bool { return c < 0 }) }
func maximum(b, a any) (any, error) { return pick("maximum", b, a, func(c int) bool { return c > 0 }) }
