"""Cryptr's Flask tutorial server, as the tutorial writes it: the course list behind
`requires_auth`, which fetches the JWKS on every request and verifies with python-jose.
Used by the benchmark as the seed this project replaces. Settings from the environment."""
import json
import os
from functools import wraps
from urllib.request import urlopen

from flask import Flask, jsonify, request
from flask_cors import cross_origin
from jose import jwt

app = Flask(__name__)
ISSUER = os.environ["CRYPTR_ISSUER"]
AUDIENCE = os.environ["CRYPTR_AUDIENCE"]
JWKS_URI = os.environ.get("CRYPTR_JWKS_URI", ISSUER + "/.well-known")
CACHE_JWKS = os.environ.get("CACHE_JWKS") == "1"
_jwks = None


class AuthError(Exception):
    def __init__(self, error, status_code):
        self.error = error
        self.status_code = status_code


@app.errorhandler(AuthError)
def handle_auth_error(ex):
    response = jsonify(ex.error)
    response.status_code = ex.status_code
    return response


def get_token_auth_header():
    auth = request.headers.get("Authorization", None)
    if not auth:
        raise AuthError({"code": "authorization_header_missing",
                         "description": "Authorization header is required"}, 401)
    parts = auth.split()
    if parts[0].lower() != "bearer" or len(parts) != 2:
        raise AuthError({"code": "invalid_header",
                         "description": "Wrong Bearer Authorization header syntax"}, 401)
    return parts[1]


def get_rsa_key(token):
    global _jwks
    if _jwks is None or not CACHE_JWKS:
        _jwks = json.loads(urlopen(JWKS_URI).read())
    unverified_header = jwt.get_unverified_header(token)
    for key in _jwks["keys"]:
        if key["kid"] == unverified_header["kid"]:
            return key
    return {}


def requires_auth(f):
    @wraps(f)
    def decorated(*args, **kwargs):
        token = get_token_auth_header()
        rsa_key = get_rsa_key(token)
        if not rsa_key:
            raise AuthError({"code": "no_rsa_key", "description": "Unable to find appropriate key"}, 401)
        try:
            jwt.decode(token, rsa_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
        except jwt.ExpiredSignatureError:
            raise AuthError({"code": "token_expired", "description": "token is expired"}, 401)
        except jwt.JWTClaimsError:
            raise AuthError({"code": "invalid_claims", "description": "incorrect claims"}, 401)
        except Exception as err:
            raise AuthError({"code": "invalid_header", "description": str(err)}, 401)
        return f(*args, **kwargs)
    return decorated


COURSES = json.load(open(os.environ["COURSES_JSON"]))


@app.route("/api/v1/courses")
@cross_origin(headers=["Content-Type", "Authorization"])
@requires_auth
def index():
    return jsonify(COURSES)
