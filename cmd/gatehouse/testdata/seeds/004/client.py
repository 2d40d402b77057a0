# Seed 004 (「【AWS】Cognitoを用いてシステム間認可してみた」): the article's client.py. get_access_token is the article's,
# unchanged; it reads CLIENT_ID, CLIENT_SECRET and TOKEN_ENDPOINT_URL from the environment as the article does.
# The article then called its API; instead, main prints the tokens it got as one JSON line for the Go test.
import os
import requests
from requests.auth import HTTPBasicAuth
import traceback

def get_access_token(client_id, client_secret, token_url, grant_type):
    # Grant Typeを設定
    data = {
        'grant_type': grant_type
    }

    try:
        # トークンリクエストを送信
        response = requests.post(token_url, data=data,
                                 auth=HTTPBasicAuth(client_id, client_secret))

        # レスポンスからアクセストークンを取得
        if response.status_code == 200:
            token_info = response.json()
            access_token = token_info.get('access_token')
            return access_token
        else:
            print(f"Failed to obtain token: {response.status_code}")
            print(response.json())
            raise Exception
    except:
        traceback.print_exc()

# Not in the article: the same request with the scope parameter, as Cognito clients send it to ask for one
# resource-server scope (<resource server identifier>/<scope name>).
def get_scoped_access_token(client_id, client_secret, token_url, grant_type, scope):
    data = {
        'grant_type': grant_type,
        'scope': scope
    }
    response = requests.post(token_url, data=data,
                             auth=HTTPBasicAuth(client_id, client_secret))
    if response.status_code != 200:
        raise Exception(f"Failed to obtain token: {response.status_code} {response.text}")
    return response.json().get('access_token')

if __name__ == '__main__':
    import json

    # クライアントIDとクライアントシークレットを環境変数から取得
    client_id = os.environ["CLIENT_ID"]
    client_secret = os.environ["CLIENT_SECRET"]

    # トークンエンドポイントURLを環境変数から取得
    token_url = os.environ["TOKEN_ENDPOINT_URL"]

    # アクセストークンを取得
    access_token = get_access_token(
        client_id, client_secret, token_url, grant_type="client_credentials")

    scoped_token = get_scoped_access_token(
        client_id, client_secret, token_url, grant_type="client_credentials", scope=os.environ["SCOPE"])

    print("RESULT " + json.dumps({"access_token": access_token, "scoped_token": scoped_token,
                                  "requests_version": requests.__version__}))
