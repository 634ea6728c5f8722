//! CRC-32/ISO-HDLC (IEEE 802.3: the polynomial 0x04C11DB7 reflected, initial value and final
//! XOR 0xFFFFFFFF; zlib's, GPT's and crc32fast's CRC-32), the checksum of the state record.
//!
//! One byte at a time from a 256-entry (1 KiB) table computed at compile time. PID 1 and
//! the boot loader check a 4 KiB record a few times per boot: crc32fast's 16 KiB
//! slice-by-16 table and its SIMD path would stay resident in PID 1 for the device's whole
//! life for microseconds saved. The tests check this function against crc32fast.

/// The reflected polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// `TABLE[n]`: the CRC register after shifting the byte `n` through it.
const TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n: u32 = 0;
    while n < 256 {
        let mut c = n;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                POLYNOMIAL ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[n as usize] = c;
        n += 1;
    }
    table
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_check_value() {
        // The catalogue's check value of CRC-32/ISO-HDLC, over the ASCII digits 1 to 9.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn agrees_with_crc32fast() {
        // Every length up to two records, over bytes that are not a repeating pattern.
        let mut bytes = [0u8; 8192];
        let mut x: u32 = 0x9E37_79B9;
        for b in bytes.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x.to_le_bytes()[0];
        }
        for len in (0..=bytes.len()).step_by(97).chain([4092, 4096]) {
            assert_eq!(
                crc32(&bytes[..len]),
                crc32fast::hash(&bytes[..len]),
                "{len}"
            );
        }
    }
}
