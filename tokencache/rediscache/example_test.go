package rediscache_test

import (
	"log"
	"net/http"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/tokencache"
	"github.com/gatehouse/gatehouse/tokencache/rediscache"
)

// Every instance of a service (or every cold start of a serverless function) builds the same Source; they share
// one token per lifetime through Redis, and only one of them fetches it when it is due.
func ExampleNew() {
	client := redis.NewClient(&redis.Options{Addr: "redis:6379"})
	defer client.Close()
	src, err := tokencache.New(tokencache.Config{
		TokenURL:     "https://tenant.auth0.com/oauth/token",
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"), // also the key that encrypts the token in Redis
		Audience:     "https://api.example.com/v1",
		AuthStyle:    tokencache.AuthBody,
		JSONBody:     true,
		Cache:        rediscache.New(client, rediscache.Options{}),
	})
	if err != nil {
		log.Fatal(err)
	}
	api := &http.Client{Transport: src.Transport(nil)}
	resp, err := api.Get("https://api.example.com/v1/items")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}
