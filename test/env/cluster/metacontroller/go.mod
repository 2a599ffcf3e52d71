// Builds Metacontroller (module path `metacontroller`) from its source through the Go module proxy.
// See ../build.sh. v1.5.20 is the Metacontroller release the module proxy reachable from this project's
// machines serves (newer tags and commits are refused: HTTP 403 "This module version is not available").
module sandboxsnapshot.test/metacontroller

go 1.16

require metacontroller v0.0.0-00010101000000-000000000000

replace metacontroller => github.com/metacontroller/metacontroller v1.5.20

// Metacontroller's own replace lines (a dependency's replaces do not apply to the main module).
replace (
	k8s.io/apimachinery => k8s.io/apimachinery v0.21.2
	k8s.io/client-go => k8s.io/client-go v0.21.2
	k8s.io/component-base => k8s.io/component-base v0.21.2
)

// reflect2 < v1.0.2 (pulled in by client-go v0.21's json-iterator) crashes at run time on Go >= 1.18.
require github.com/json-iterator/go v1.1.12 // indirect
