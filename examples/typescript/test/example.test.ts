// The example as CI runs it against a real node (scripts/examples.sh sets the variables):
// a user creates a proposal, votes on it, and hears the vote recorded over /ws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { MeritClient, signIn, type VoteRecorded } from '../src/client.js';

const baseUrl = process.env.MERIT_URL ?? 'http://127.0.0.1:8080';
const chainId = Number(process.env.MERIT_CHAIN_ID ?? 31337);

test('a wallet signs in, creates a proposal, votes, and hears the vote recorded', { timeout: 60_000 }, async () => {
  // A fresh wallet signs in with Ethereum: no token is handed out of band.
  const account = privateKeyToAccount(generatePrivateKey());
  const login = await signIn(baseUrl, account, chainId);
  const user = account.address.toLowerCase();
  assert.equal(login.address, user);
  const client = new MeritClient(baseUrl, login.token);
  const id = `ts-${Date.now()}`;
  const now = Date.now();
  const created = await client.createProposal({
    proposal: id,
    title: 'Fund the TypeScript example',
    starts_at: new Date(now - 60_000).toISOString(),
    ends_at: new Date(now + 86_400_000).toISOString(),
    quorum: 1,
  });
  assert.equal(created.type, 'governance.proposal.created');

  // The proposal is applied by its actor shortly after the 202.
  for (let i = 0; ; i++) {
    try {
      const p = await client.proposal(id);
      assert.equal(p.creator, user);
      break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const abort = new AbortController();
  const frames = client.notifications(0, abort.signal);
  const voted = await client.castVote(id, { choice: 'for', reason: 'typed end to end' });
  assert.equal(voted.type, 'governance.vote.cast');

  let hello = false;
  for await (const frame of frames) {
    if (frame.type === 'hello') {
      assert.equal(frame.user, user);
      hello = true;
      continue;
    }
    if (frame.type === 'notification' && frame.kind === 'governance.vote.recorded') {
      const recorded = frame.payload as unknown as VoteRecorded;
      if (recorded.proposal !== id) continue;
      assert.equal(recorded.voter, user);
      assert.equal(recorded.choice, 'for');
      assert.ok(recorded.weight > 0);
      assert.ok(frame.seq >= 1);
      abort.abort();
      break;
    }
  }
  assert.ok(hello, 'the session opened with a hello frame');
});
