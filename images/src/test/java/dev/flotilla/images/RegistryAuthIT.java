package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.registry.RegistryConfig;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Credentials, the bearer token dance and the plain-http rule against real registries. */
class RegistryAuthIT {
  @TempDir Path dir;

  @BeforeAll
  static void tools() {
    TestUmoci.requireTools();
  }

  private Path image(String greeting) throws Exception {
    Path layout = dir.resolve("layout");
    TestUmoci.build(dir, layout, greeting, Map.of("etc/greeting", greeting), "AUTH=1", "/");
    return layout;
  }

  private ImageStore store(String name, RegistryConfig registry) {
    return new ImageStore(ImagesConfig.defaults(dir.resolve(name)).withRegistry(registry), Set::of, Runnable::run);
  }

  @Test
  void basicAuthRegistry() throws Exception {
    TestTools.require("htpasswd", "apache2-utils");
    Path htpasswd = dir.resolve("htpasswd");
    TestTools.run(dir, "htpasswd", "-Bbc", htpasswd.toString(), "alice", "secret");
    try (TestRegistry reg = TestRegistry.start(dir, "127.0.0.1",
        "  htpasswd:\n    realm: flotilla-test\n    path: " + htpasswd + "\n")) {
      Path layout = image("private");
      Digest pushed = TestUmoci.push(layout, "private", reg.address(), "team/app:1", "--dest-creds=alice:secret");
      ImageReference ref = ImageReference.parse(reg.address() + "/team/app:1");

      ImageStore store = store("store", RegistryConfig.defaults());
      Throwable e = RegistryPullIT.assertThrowsCause(store.pull(ref, Optional.empty(), "tenant-a"));
      assertTrue(e.getMessage().contains("requires authentication for team/app; no credentials are configured"), e.getMessage());
      e = RegistryPullIT.assertThrowsCause(store.pull(ref, Optional.of(Credentials.basic("alice", "wrong")), "tenant-a"));
      assertTrue(e.getMessage().contains("answered 401") && e.getMessage().contains("refused the credentials"), e.getMessage());

      ResolvedImage img = store.pull(ref, Optional.of(Credentials.basic("alice", "secret")), "tenant-a").join();
      assertEquals(pushed, img.manifestDigest());
      assertTrue(store.resolve(ref.toString(), "tenant-b").isEmpty(), "pulled with a tenant's credentials: that tenant's");
      assertTrue(store.resolve(pushed.toString(), "tenant-b").isEmpty());
      e = RegistryPullIT.assertThrowsCause(store.pull(ref.withDigest(pushed), Optional.empty(), "tenant-b"));
      assertTrue(e.getMessage().contains("requires authentication"), "a digest another tenant holds is no shortcut: " + e);
      assertEquals("private", Files.readString(store.layerDirs(img.manifestDigest()).get(0).resolve("etc/greeting")));

      // The node's own credentials for the host: the image is shared.
      ImageStore nodeAuth = store("store-node", RegistryConfig.defaults()
          .withAuth(Map.of(reg.address(), Credentials.basic("alice", "secret"))));
      nodeAuth.pull(ref, Optional.empty(), "tenant-a").join();
      assertTrue(nodeAuth.resolve(ref.toString(), "tenant-b").isPresent());
    }
  }

  @Test
  void bearerTokenDanceAnonymousAndWithCredentials() throws Exception {
    try (TestTokenServer tokens = TestTokenServer.start(dir);
         TestRegistry reg = TestRegistry.start(dir, "127.0.0.1", tokens.registryAuthYaml())) {
      Path layout = image("tokened");
      Digest pub = TestUmoci.push(layout, "tokened", reg.address(), "public/app:1", "--dest-creds=alice:secret");
      Digest priv = TestUmoci.push(layout, "tokened", reg.address(), "private/app:1", "--dest-creds=alice:secret");
      ImageStore store = store("store", RegistryConfig.defaults());

      int anonymousBefore = tokens.anonymous.get();
      ResolvedImage p = store.pull(ImageReference.parse(reg.address() + "/public/app:1"), Optional.empty(), "tenant-a").join();
      assertEquals(pub, p.manifestDigest());
      assertTrue(tokens.anonymous.get() > anonymousBefore, "an anonymous token was fetched");

      ImageReference privRef = ImageReference.parse(reg.address() + "/private/app:1");
      Throwable e = RegistryPullIT.assertThrowsCause(store.pull(privRef, Optional.empty(), "tenant-a"));
      assertTrue(e.getMessage().contains("answered 401"), e.getMessage());
      e = RegistryPullIT.assertThrowsCause(store.pull(privRef, Optional.of(Credentials.basic("alice", "nope")), "tenant-a"));
      assertTrue(e.getMessage().contains("token service 127.0.0.1 answered 401"), e.getMessage());

      int basicBefore = tokens.withBasic.get();
      ResolvedImage q = store.pull(privRef, Optional.of(Credentials.basic("alice", "secret")), "tenant-a").join();
      assertEquals(priv, q.manifestDigest());
      assertTrue(tokens.withBasic.get() > basicBefore, "the token was fetched with the tenant's credentials");
      assertTrue(store.resolve(privRef.toString(), "tenant-b").isEmpty());
    }
  }

  @Test
  void plainHttpOnlyForLoopbackAndConfiguredInsecureRegistries() throws Exception {
    String ip = nonLoopbackIpv4();
    try (TestRegistry reg = TestRegistry.start(dir, ip, "")) {
      Path layout = image("remote");
      Digest pushed = TestUmoci.push(layout, "remote", reg.address(), "remote/app:1");
      ImageReference ref = ImageReference.parse(reg.address() + "/remote/app:1");

      Throwable e = RegistryPullIT.assertThrowsCause(store("tls", RegistryConfig.defaults()).pull(ref, Optional.empty(), ""));
      assertTrue(e.getMessage().contains("cannot reach https://" + reg.address()), e.getMessage());
      assertTrue(e.getMessage().contains("flotilla.images.insecure-registries"), e.getMessage());

      ImageStore insecure = store("insecure", RegistryConfig.defaults().withInsecureRegistries(Set.of(reg.address())));
      assertEquals(pushed, insecure.pull(ref, Optional.empty(), "").join().manifestDigest());
    }
  }

  private static String nonLoopbackIpv4() throws Exception {
    for (NetworkInterface ni : Collections.list(NetworkInterface.getNetworkInterfaces())) {
      if (!ni.isUp() || ni.isLoopback()) {
        continue;
      }
      for (InetAddress a : Collections.list(ni.getInetAddresses())) {
        if (a instanceof Inet4Address && !a.isLoopbackAddress()) {
          return a.getHostAddress();
        }
      }
    }
    throw new AssertionError("this test needs a non-loopback IPv4 address to serve a registry over plain http on");
  }
}
