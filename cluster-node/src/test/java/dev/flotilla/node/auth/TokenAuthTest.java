package dev.flotilla.node.auth;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenAuthTest {
  @TempDir Path dir;

  private Config auth(String tokens) {
    return ConfigFactory.parseString("tokens = " + tokens + "\ndefault-token-file = off\nadmin-tenants = []");
  }

  @Test
  void aConfiguredTokenFileIsReadWhenOnlyItsOwnerCanReadIt() throws IOException {
    Path f = Files.writeString(dir.resolve("acme.token"), "acme-token-0123456789\n");
    Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-------"));
    TokenAuth auth = TokenAuth.fromConfig(auth("[ { tenant = acme, token-file = \"" + f + "\" } ]"), dir);
    assertEquals(Optional.of("acme"), auth.tenantOf("Bearer acme-token-0123456789"));
  }

  @Test
  void aTokenFileOthersCanReadIsRefusedWithTheChmod() throws IOException {
    Path f = Files.writeString(dir.resolve("acme.token"), "acme-token-0123456789\n");
    Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-r--r--"));
    IOException e = assertThrows(IOException.class,
        () -> TokenAuth.fromConfig(auth("[ { tenant = acme, token-file = \"" + f + "\" } ]"), dir));
    assertTrue(e.getMessage().contains("chmod 600 " + f), e.getMessage());

    Path reg = Files.writeString(dir.resolve("registry.token"), "r\n");
    Files.setPosixFilePermissions(reg, PosixFilePermissions.fromString("rw-r-----"));
    IOException r = assertThrows(IOException.class, () -> TokenAuth.requireOwnerOnlySecretFiles(ConfigFactory.parseString(
        "credentials = [ { registry = \"ghcr.io\", token-file = \"" + reg + "\" } ]")));
    assertTrue(r.getMessage().contains("chmod 600 " + reg), r.getMessage());
  }

  @Test
  void aTenantGivesATokenOrAFileNotBoth() throws IOException {
    Path f = Files.writeString(dir.resolve("acme.token"), "acme-token-0123456789\n");
    Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-------"));
    assertThrows(IllegalArgumentException.class, () -> TokenAuth.fromConfig(
        auth("[ { tenant = acme, token = \"acme-token-0123456789\", token-file = \"" + f + "\" } ]"), dir));
  }
}
