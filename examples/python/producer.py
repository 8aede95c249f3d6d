#!/usr/bin/env python3
"""A complete merit producer: publishes governance events to merit over AMQP.

It does what the README's contract asks of every producer:
  * one JSON envelope per event, published to the topic exchange `merit.events` with the
    event type as routing key, persistent, `content_type: application/json`, the event id
    as `message_id`;
  * one header per actor key the event addresses (`merit-proposal` for these types);
  * publisher confirms: an event counts as sent only once the broker confirmed it;
  * retries that reuse the event id, so merit applies each event at most once however
    often it is sent.

Usage:
  producer.py --amqp-url amqp://user:pass@host:5672/vhost --proposal p-1 \
      --creator 0x... --voter 0x... [--voter 0x...]

It creates the proposal (open now, closing in a day) and casts one "for" vote per voter,
then prints one line per event: its type and id.
"""

import argparse
import datetime
import json
import sys
import time
import uuid

import pika
from pika.exceptions import AMQPConnectionError, NackError, UnroutableError


def envelope(event_type, payload, source="example-producer"):
    """A version-1 envelope with a fresh id. Keep the id: a retry must reuse it."""
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": 1,
        "source": source,
        "occurred_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "payload": payload,
    }


class Producer:
    """Publishes envelopes with confirms; reconnects and re-sends (same id) on failure."""

    def __init__(self, url, attempts=5):
        self.url = url
        self.attempts = attempts
        self.connection = None
        self.channel = None

    def _connect(self):
        self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, env):
        """Returns once the broker confirmed `env`; raises after `attempts` failures."""
        headers = {"merit-proposal": env["payload"]["proposal"]}
        body = json.dumps(env).encode()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=env["id"],
            headers=headers,
        )
        for attempt in range(1, self.attempts + 1):
            try:
                if self.channel is None or self.channel.is_closed:
                    self._connect()
                # With confirms on, basic_publish blocks until the broker acks it and
                # raises if the broker nacks it or (mandatory) cannot route it.
                self.channel.basic_publish(
                    "merit.events", env["type"], body, properties, mandatory=True
                )
                return
            except (AMQPConnectionError, NackError, UnroutableError) as e:
                print(f"attempt {attempt} for {env['id']} failed: {e!r}", file=sys.stderr)
                self.channel = None
                time.sleep(min(0.2 * 2 ** attempt, 5))
        raise RuntimeError(f"{env['type']} {env['id']} not confirmed after {self.attempts} attempts")

    def close(self):
        if self.connection is not None and self.connection.is_open:
            self.connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--proposal", required=True)
    parser.add_argument("--creator", required=True)
    parser.add_argument("--voter", action="append", default=[])
    args = parser.parse_args()

    now = datetime.datetime.now(datetime.timezone.utc)
    events = [
        envelope(
            "governance.proposal.created",
            {
                "proposal": args.proposal,
                "creator": args.creator,
                "title": f"Proposal {args.proposal}",
                "starts_at": (now - datetime.timedelta(minutes=1)).isoformat(),
                "ends_at": (now + datetime.timedelta(days=1)).isoformat(),
                "quorum": 1,
                "threshold_bps": 5000,
            },
        )
    ]
    for voter in args.voter:
        events.append(
            envelope(
                "governance.vote.cast",
                {"proposal": args.proposal, "voter": voter, "choice": "for"},
            )
        )

    producer = Producer(args.amqp_url)
    try:
        for env in events:
            producer.publish(env)
            print(f"confirmed {env['type']} {env['id']}")
        # Sending one again with the same id is safe: merit applies it once.
        producer.publish(events[-1])
        print(f"re-sent {events[-1]['type']} {events[-1]['id']} (merit applies it once)")
    finally:
        producer.close()


if __name__ == "__main__":
    main()
