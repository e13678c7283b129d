package dev.flotilla.node.images;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.nio.file.Path;
import java.util.concurrent.ExecutionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NodeImagesTest {
  @TempDir Path data;

  private NodeImages images(String allowed) {
    return NodeImages.fromConfig(ConfigFactory.parseString("allowed-registries = " + allowed)
        .withFallback(ConfigFactory.load().getConfig("flotilla.images")), data, Runnable::run);
  }

  @Test
  void onlyAllowedRegistriesArePulledFrom() throws Exception {
    NodeImages images = images("[\"docker.io\", \"registry.example.com:5000\"]");
    assertDoesNotThrow(() -> images.checkRegistry(ImageReference.parse("busybox")));
    assertDoesNotThrow(() -> images.checkRegistry(ImageReference.parse("registry.example.com:5000/app:1")));
    ImageException e = assertThrows(ImageException.class, () -> images.checkRegistry(ImageReference.parse("127.0.0.1:7070/x")));
    assertTrue(e.getMessage().contains("flotilla.images.allowed-registries"), e.getMessage());

    // a create naming it is refused before the node sends anything there
    ExecutionException ce = assertThrows(ExecutionException.class,
        () -> images.pin("t", "127.0.0.1:1/x:1").toCompletableFuture().get());
    SandboxError se = (SandboxError) ce.getCause();
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT, se.kind());
    assertTrue(se.getMessage().contains("not allowed"), se.getMessage());
  }

  @Test
  void noListAllowsAnyRegistry() {
    assertDoesNotThrow(() -> images("[]").checkRegistry(ImageReference.parse("127.0.0.1:7070/x")));
  }
}
