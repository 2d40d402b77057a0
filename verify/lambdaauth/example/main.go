// Command example is seed 002's API Gateway Lambda authorizer, on verify and lambdaauth: it checks the Bearer token
// of each request against the issuer's JWKS, issuer and audience, and answers with a policy covering every route of
// the stage (see the lambdaauth package documentation for why).
//
// Configuration, as in the seed, from the environment:
//
//	ISSUER (or TOKEN_ISSUER)  the exact iss of accepted tokens, e.g. https://auth.example.com/
//	AUDIENCE                  the API identifier the tokens must be issued for
//	JWKS_URI                  the issuer's JWKS, e.g. https://auth.example.com/.well-known/jwks.json
//	                          (optional: discovered from ISSUER when unset)
//	AUTHORIZER_TYPE           TOKEN (default) or REQUEST for REST APIs; HTTP for HTTP APIs (payload format 2.0,
//	                          simple responses)
//
// and, to accept Gatehouse API keys ("Bearer <key>") beside access tokens, checked online with the server:
//
//	GATEHOUSE_SERVER          the Gatehouse server's URL, e.g. https://auth.example.com
//	GATEHOUSE_CLIENT_ID       a client granted verify:apikeys of urn:gatehouse:management
//	GATEHOUSE_CLIENT_SECRET   its secret
//
// An accepted key is trusted for verify.DefaultAPIKeyCacheTTL (30 s), plus API Gateway's own authorizer cache TTL:
// together, the delay before a deleted key is refused.
//
// Build for the provided.al2023 runtime, which runs an executable named bootstrap, and zip it:
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./verify/lambdaauth/example
//	zip authorizer.zip bootstrap
//	aws lambda create-function --function-name gatehouse-authorizer --runtime provided.al2023 \
//	  --architectures x86_64 --handler bootstrap --zip-file fileb://authorizer.zip --role ROLE_ARN \
//	  --environment 'Variables={ISSUER=https://auth.example.com/,AUDIENCE=https://api.example.com/v1}'
//
// (GOARCH=arm64 with --architectures arm64 for Graviton.) The verifier lives as long as the execution environment,
// so the JWKS is fetched once per cold start and refreshed as its Cache-Control allows.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gatehouse/gatehouse/verify"
	"github.com/gatehouse/gatehouse/verify/lambdaauth"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("authorizer: " + err.Error())
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	iss := os.Getenv("ISSUER")
	if iss == "" {
		iss = os.Getenv("TOKEN_ISSUER") // the seed's name
	}
	aud := os.Getenv("AUDIENCE")
	if iss == "" || aud == "" {
		return fmt.Errorf("set ISSUER and AUDIENCE (and JWKS_URI, or let it be discovered from ISSUER)")
	}
	tokens, err := verify.New(verify.Config{Issuer: iss, Audiences: []string{aud}, JWKSURL: os.Getenv("JWKS_URI"), Logger: log})
	if err != nil {
		return err
	}
	var v verify.TokenVerifier = tokens
	if server := os.Getenv("GATEHOUSE_SERVER"); server != "" {
		keys, err := verify.NewAPIKeyVerifier(verify.APIKeyConfig{ServerURL: server, Audience: aud,
			ClientID: os.Getenv("GATEHOUSE_CLIENT_ID"), ClientSecret: os.Getenv("GATEHOUSE_CLIENT_SECRET")})
		if err != nil {
			return err
		}
		v = verify.Any(tokens, keys)
	}
	a, err := lambdaauth.New(v, lambdaauth.Options{Logger: log})
	if err != nil {
		return err
	}
	switch t := os.Getenv("AUTHORIZER_TYPE"); t {
	case "", "TOKEN":
		lambda.Start(a.TokenAuthorizer)
	case "REQUEST":
		lambda.Start(a.RequestAuthorizer)
	case "HTTP":
		lambda.Start(a.HTTPSimple)
	default:
		return fmt.Errorf("AUTHORIZER_TYPE %q: use TOKEN, REQUEST or HTTP", t)
	}
	return nil
}
