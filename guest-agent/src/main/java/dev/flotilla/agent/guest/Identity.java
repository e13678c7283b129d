package dev.flotilla.agent.guest;

import java.util.Map;

/**
 * Which sandbox and incarnation the agent serves, and the secret a handshake must carry for it.
 * Fixed at start, except in a clone of a template VM, whose agent takes a new one when reborn.
 */
record Identity(String sandboxId, long incarnation, HandshakeSecret secret) {

  /** Whether a handshake naming these credentials names this identity (the secret compared in constant time). */
  boolean is(String otherSandboxId, long otherIncarnation, byte[] otherSecret) {
    return sandboxId.equals(otherSandboxId) && incarnation == otherIncarnation && secret.matches(otherSecret);
  }

  /** What every process the agent starts gets in its environment. */
  Map<String, String> environment() {
    return Map.of("FLOTILLA_SANDBOX_ID", sandboxId, "FLOTILLA_INCARNATION", Long.toString(incarnation));
  }

  @Override
  public String toString() {
    return "sandbox " + sandboxId + " incarnation " + incarnation;
  }
}
