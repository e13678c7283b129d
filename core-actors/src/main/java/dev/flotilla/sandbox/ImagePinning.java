package dev.flotilla.sandbox;

import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * Turns the image a create names into the exact bytes the sandbox will run: the node pulls (or
 * finds) it for the tenant and answers with a reference pinned to its manifest digest, so a
 * restart on this node or any other runs the same image even after its tag has moved.
 */
@FunctionalInterface
public interface ImagePinning {

  /**
   * @return the pinned reference ({@code repo:tag@sha256:…}); fails with a {@link SandboxError}
   *     saying what to fix (NOT_FOUND for an image the tenant cannot see, UNAVAILABLE when the
   *     registry cannot be reached)
   */
  CompletionStage<String> pin(String tenant, String image);

  /**
   * The command an image runs by default, its {@code Entrypoint} followed by its {@code Cmd}, as
   * {@code --image-command} uses it; empty when it has neither.
   *
   * @param pinned a reference {@link #pin} answered
   */
  default CompletionStage<java.util.List<String>> command(String tenant, String pinned) {
    return CompletableFuture.failedFuture(SandboxError.precondition("this node cannot read the command of image " + pinned));
  }

  /** For nodes without an image store: every image is refused. */
  ImagePinning NONE = (tenant, image) -> CompletableFuture.failedFuture(
      SandboxError.precondition("this node has no image store: create the sandbox without an image"));
}
