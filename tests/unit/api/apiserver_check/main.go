// apiserver_check runs the API server's own CRD code offline. With one argument (a CRD YAML) it
// validates the CRD as kube-apiserver does on create: structural schema, defaults, CEL
// compilation and cost. With a second argument (JSON cases) it also admits each case's
// object like a create (or, with "old", an update) of a custom resource: defaulting,
// pruning, OpenAPI validation, CEL rules. Prints JSON; exits 1 if the CRD is invalid.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

type testCase struct {
	Name   string                 `json:"name"`
	Object map[string]interface{} `json:"object"`
	Old    map[string]interface{} `json:"old,omitempty"`
}

type result struct {
	Name    string                 `json:"name"`
	Errors  []string               `json:"errors"`
	Default map[string]interface{} `json:"defaulted"`
}

func main() {
	data, err := os.ReadFile(os.Args[1])
	check(err)
	var v1 apiextensionsv1.CustomResourceDefinition
	check(yaml.UnmarshalStrict(data, &v1))
	scheme := runtime.NewScheme()
	check(apiextensionsv1.AddToScheme(scheme))
	check(apiextensionsinternal.AddToScheme(scheme))
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1)
	var crd apiextensionsinternal.CustomResourceDefinition
	check(scheme.Convert(&v1, &crd, nil))

	crdErrs := []string{}
	for _, e := range crdvalidation.ValidateCustomResourceDefinition(context.Background(), &crd) {
		crdErrs = append(crdErrs, e.Error())
	}
	out := map[string]interface{}{"crdErrors": crdErrs}
	if len(crdErrs) == 0 && len(os.Args) > 2 {
		out["cases"] = admit(&crd, os.Args[2])
	}
	enc, _ := json.MarshalIndent(out, "", "  ")
	fmt.Println(string(enc))
	if len(crdErrs) > 0 {
		os.Exit(1)
	}
}

func admit(crd *apiextensionsinternal.CustomResourceDefinition, casesFile string) []result {
	// The internal type moves a schema shared by all versions up to spec.validation.
	props := crd.Spec.Validation.OpenAPIV3Schema
	if crd.Spec.Versions[0].Schema != nil {
		props = crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	}
	structural, err := structuralschema.NewStructural(props)
	check(err)
	schemaValidator, _, err := apiservervalidation.NewSchemaValidator(props)
	check(err)
	celValidator := cel.NewValidator(structural, true, celconfig.PerCallLimit)

	data, err := os.ReadFile(casesFile)
	check(err)
	var cases []testCase
	// As the API server decodes: integers stay int64 (encoding/json would make them float64).
	check(utiljson.Unmarshal(data, &cases))
	results := []result{}
	for _, c := range cases {
		obj := prepare(c.Object, structural)
		var old interface{}
		var errs field.ErrorList
		if c.Old != nil {
			oldObj := prepare(c.Old, structural)
			old = oldObj
			errs = apiservervalidation.ValidateCustomResourceUpdate(nil, obj, oldObj, schemaValidator)
		} else {
			errs = apiservervalidation.ValidateCustomResource(nil, obj, schemaValidator)
		}
		errs = append(errs, listtype.ValidateListSetsAndMaps(nil, structural, obj)...)
		celErrs, _ := celValidator.Validate(context.Background(), nil, structural, obj, old, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
		r := result{Name: c.Name, Errors: []string{}, Default: obj}
		for _, e := range errs {
			r.Errors = append(r.Errors, e.Error())
		}
		results = append(results, r)
	}
	return results
}

// prepare does to an object what the API server does before validating it.
func prepare(obj map[string]interface{}, s *structuralschema.Structural) map[string]interface{} {
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, s)
	structuraldefaulting.Default(obj, s)
	pruning.Prune(obj, s, true)
	return obj
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
