#!/usr/bin/env python3
"""Demo upstream APIs for gatherd's embedded demo: a small JSON service on 127.0.0.1.

  GET /users/{id}            a user object (404 for ids above 100)
  GET /users/{id}/settings   the user's settings, in the language asked for (Accept-Language);
                             404 for odd ids (no settings saved)
  GET /quota                 always 429: the API's quota is spent
  GET /posts?userId={id}     ten posts of that user
  GET /albums?userId={id}    ten albums of that user
  GET /comments?postId={id}  three comments on that post
  GET /companies/{id}        a company (1 to 5) and the ids of some of its employees
  GET /slow?ms=N             answers {"slept_ms": N} after N ms (at most 10 s)

Data is derived from the id, so answers are deterministic. With --api-key KEY every request must
carry X-Api-Key: KEY (401 otherwise), as a third-party API would demand.
"""
import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def user(uid):
    return {"id": uid, "name": f"User {uid}", "username": f"user{uid}",
            "email": f"user{uid}@example.org", "city": ["Lisbon", "Oslo", "Kyoto", "Lima"][uid % 4],
            "company_id": 1 + uid % 5}


def company(cid):
    # users 1..100 work at company 1 + uid % 5
    return {"id": cid, "name": ["Acme", "Globex", "Initech", "Umbrella", "Hooli"][cid - 1],
            "employee_ids": [u for u in range(1, 101) if 1 + u % 5 == cid][:5]}


def posts(uid):
    return [{"id": uid * 10 + i, "userId": uid, "title": f"Post {i} of user {uid}",
             "body": "Lorem ipsum dolor sit amet."} for i in range(10)]


def albums(uid):
    return [{"id": uid * 10 + i, "userId": uid, "title": f"Album {i} of user {uid}"} for i in range(10)]


def comments(pid):
    return [{"id": pid * 10 + i, "postId": pid, "name": f"Comment {i} on post {pid}",
             "body": "Nice post."} for i in range(3)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gatherd's connection pool expects

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def key_is_wrong(self):
        if self.server.api_key is None or self.headers.get("X-Api-Key") == self.server.api_key:
            return False
        self.answer(401, {"error": "missing or wrong API key"})
        return True

    def do_GET(self):
        if self.key_is_wrong():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        try:
            if len(parts) == 2 and parts[0] == "users":
                uid = int(parts[1])
                if uid < 1 or uid > 100:
                    return self.answer(404, {"error": f"no user {uid}"})
                return self.answer(200, user(uid))
            if len(parts) == 3 and parts[0] == "users" and parts[2] == "settings":
                uid = int(parts[1])
                if uid % 2 == 1:
                    return self.answer(404, {"error": f"user {uid} saved no settings"})
                lang = (self.headers.get("Accept-Language") or "en").split(",")[0].strip()
                return self.answer(200, {"language": lang, "theme": "dark"})
            if len(parts) == 2 and parts[0] == "companies":
                cid = int(parts[1])
                if cid < 1 or cid > 5:
                    return self.answer(404, {"error": f"no company {cid}"})
                return self.answer(200, company(cid))
            if parts == ["quota"]:
                return self.answer(429, {"error": "quota spent"})
            if parts == ["posts"]:
                return self.answer(200, posts(int(query["userId"][0])))
            if parts == ["albums"]:
                return self.answer(200, albums(int(query["userId"][0])))
            if parts == ["comments"]:
                return self.answer(200, comments(int(query["postId"][0])))
            if parts == ["slow"]:
                ms = min(int(query.get("ms", ["100"])[0]), 10000)
                time.sleep(ms / 1000)
                return self.answer(200, {"slept_ms": ms})
        except (ValueError, KeyError):
            return self.answer(400, {"error": "bad request"})
        return self.answer(404, {"error": "not found"})


    def do_POST(self):
        # POST /users/ID/messages: echoes the JSON body it was sent, with an id
        if self.key_is_wrong():
            return
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        n = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(n)
        if len(parts) == 3 and parts[0] == "users" and parts[2] == "messages":
            try:
                doc = json.loads(raw or b"null")
            except ValueError:
                return self.answer(400, {"error": "the body is not JSON"})
            return self.answer(201, {"id": 1, "to": int(parts[1]), "received": doc})
        return self.answer(404, {"error": "not found"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=18081)
    ap.add_argument("--api-key", help="the X-Api-Key every request must carry")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.api_key = args.api_key
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
