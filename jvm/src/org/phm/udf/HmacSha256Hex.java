package org.phm.udf;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import org.apache.spark.sql.api.java.UDF3;

/**
 * HMAC-SHA-256 (RFC 2104) of a UTF-8 message as 64 lower-case hex characters, under a key given as its two
 * padded blocks (K ^ ipad, K ^ opad: phm.ingest.pseudonymise.pads), so the key reaches Spark as columns of a
 * broadcast row and never as a literal in a plan.
 *
 * <p>HMAC is H((K ^ opad) || H((K ^ ipad) || m)). Each padded key is one SHA-256 block, so the digests' states
 * after those blocks are the same for every row: they are computed once per key and thread and cloned per row,
 * which leaves one block for a short message and one for the outer digest, where the same definition written in
 * Spark SQL (sha2 over the concatenations) hashes four and encodes the inner digest as hex and back.
 * A few keys are kept per thread, since a key rotation computes the old and the new key's pseudonyms
 * side by side (phm.governance.rekey).
 */
public final class HmacSha256Hex implements UDF3<byte[], byte[], String, String> {
  private static final long serialVersionUID = 1L;
  private static final char[] HEX = "0123456789abcdef".toCharArray();
  private static final int KEYS_KEPT = 4;

  /** A key's padded blocks and the digests' states after them. */
  private static final class KeyState {
    final byte[] innerPad;
    final byte[] outerPad;
    final MessageDigest inner;
    final MessageDigest outer;

    KeyState(byte[] innerPad, byte[] outerPad) throws NoSuchAlgorithmException {
      this.innerPad = innerPad.clone();
      this.outerPad = outerPad.clone();
      inner = MessageDigest.getInstance("SHA-256");
      inner.update(innerPad);
      outer = MessageDigest.getInstance("SHA-256");
      outer.update(outerPad);
    }

    boolean isFor(byte[] innerPad, byte[] outerPad) {
      return Arrays.equals(this.innerPad, innerPad) && Arrays.equals(this.outerPad, outerPad);
    }
  }

  private static final ThreadLocal<KeyState[]> KEYS = ThreadLocal.withInitial(() -> new KeyState[KEYS_KEPT]);

  @Override
  public String call(byte[] innerPad, byte[] outerPad, String message) throws Exception {
    if (message == null || innerPad == null || outerPad == null) {
      return null;
    }
    KeyState key = stateFor(innerPad, outerPad);
    byte[] innerDigest = ((MessageDigest) key.inner.clone()).digest(message.getBytes(StandardCharsets.UTF_8));
    byte[] mac = ((MessageDigest) key.outer.clone()).digest(innerDigest);
    char[] text = new char[2 * mac.length];
    for (int i = 0; i < mac.length; i++) {
      text[2 * i] = HEX[(mac[i] >> 4) & 0xf];
      text[2 * i + 1] = HEX[mac[i] & 0xf];
    }
    return new String(text);
  }

  /** The thread's state for this key: the most recent first; a new key pushes out the least recent. */
  private static KeyState stateFor(byte[] innerPad, byte[] outerPad) throws NoSuchAlgorithmException {
    KeyState[] kept = KEYS.get();
    int found = 0;
    while (found < kept.length && kept[found] != null && !kept[found].isFor(innerPad, outerPad)) {
      found++;
    }
    KeyState state;
    if (found < kept.length && kept[found] != null) {
      state = kept[found];
    } else {
      state = new KeyState(innerPad, outerPad);
      found = kept.length - 1;
    }
    System.arraycopy(kept, 0, kept, 1, found);
    kept[0] = state;
    return state;
  }
}
