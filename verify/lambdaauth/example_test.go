package lambdaauth_test

import (
	"context"
	"fmt"
	"log"

	"github.com/aws/aws-lambda-go/events"

	"github.com/gatehouse/gatehouse/verify"
	"github.com/gatehouse/gatehouse/verify/lambdaauth"
)

// A REST API TOKEN authorizer: the policy of a valid token allows every route of the stage, because API Gateway
// reuses it for the token's calls to other routes; an invalid token gets "Unauthorized" (401).
func ExampleAuthorizer_TokenAuthorizer() {
	is, stop := startIssuer() // a test issuer: its JWKS on a local server, and a signing key
	defer stop()

	v, err := verify.New(verify.Config{
		Issuer:    is.url + "/",
		Audiences: []string{"https://api.example.com/v1"},
		JWKSURL:   is.url + "/.well-known/jwks.json",
	})
	if err != nil {
		log.Fatal(err)
	}
	a, err := lambdaauth.New(v, lambdaauth.Options{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	// In main: lambda.Start(a.TokenAuthorizer)

	resp, err := a.TokenAuthorizer(context.Background(), events.APIGatewayCustomAuthorizerRequest{
		Type:               "TOKEN",
		AuthorizationToken: "Bearer " + is.sign(map[string]any{"scope": "read", "org_id": "acme"}),
		MethodArn:          "arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/GET/items/7",
	})
	if err != nil {
		log.Fatal(err)
	}
	st := resp.PolicyDocument.Statement[0]
	fmt.Println(resp.PrincipalID, st.Effect, st.Resource)
	fmt.Println(resp.Context["scope"], resp.Context["org_id"])

	_, err = a.TokenAuthorizer(context.Background(), events.APIGatewayCustomAuthorizerRequest{
		Type:               "TOKEN",
		AuthorizationToken: "Bearer InvalidToken",
		MethodArn:          "arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/GET/items/7",
	})
	fmt.Println(err)
	// Output:
	// svc-one Allow [arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/*/*]
	// read acme
	// Unauthorized
}

// Limiting each scope to its routes: the policy allows the routes of the token's scopes, all of them.
func ExampleOptions_routes() {
	is, stop := startIssuer()
	defer stop()
	v, err := verify.New(verify.Config{Issuer: is.url + "/", Audiences: []string{"https://api.example.com/v1"}, JWKSURL: is.url + "/jwks.json"})
	if err != nil {
		log.Fatal(err)
	}
	a, err := lambdaauth.New(v, lambdaauth.Options{Logger: quiet, Routes: map[string][]string{
		"read":  {"GET /items", "GET /items/*"},
		"write": {"POST /items", "PUT /items/*", "DELETE /items/*"},
	}})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := a.TokenAuthorizer(context.Background(), events.APIGatewayCustomAuthorizerRequest{
		Type:               "TOKEN",
		AuthorizationToken: "Bearer " + is.sign(map[string]any{"scope": "read"}),
		MethodArn:          "arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/GET/items",
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range resp.PolicyDocument.Statement[0].Resource {
		fmt.Println(r)
	}
	// Output:
	// arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/GET/items
	// arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/GET/items/*
}
