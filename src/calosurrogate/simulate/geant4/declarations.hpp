// Our own declarations of the few Geant4 names both compiled parts use, written from the symbols the
// pinned wheel exports (it ships no headers), and the block allocator for objects of unknown size.
#pragma once
#include <new>
#include <string>

// Geant4's string adds no data member to std::string.
class G4String : public std::string {
 public:
  G4String(const char* text) : std::string(text) {}
};

class G4ParticleDefinition;
class G4Gamma { public: static G4Gamma* Gamma(); };
class G4Electron { public: static G4Electron* Electron(); };
class G4Positron { public: static G4Positron* Positron(); };

namespace calo {

// Objects whose real size is not known here are built in blocks far larger than any of them, filled
// with a canary first: the bytes the constructor wrote end at the last non-canary byte. Geant4
// deletes them through their virtual destructors, which free the block.
const unsigned long kBlock = 1 << 14;
const unsigned char kCanary = 0xA5;

// Largest number of bytes any constructor wrote into its block (tests check it stays below kBlock).
extern unsigned long largest_used;

// Bytes the constructor wrote into ``block`` (the canary ends them), recorded in largest_used.
inline unsigned long used_bytes(const unsigned char* block) {
  unsigned long used = kBlock;
  while (used > 0 && block[used - 1] == kCanary) --used;
  if (used > largest_used) largest_used = used;
  return used;
}

template <class T, class... Args>
T* build(Args&&... args) {
  unsigned char* block = static_cast<unsigned char*>(::operator new(kBlock));
  for (unsigned long i = 0; i < kBlock; ++i) block[i] = kCanary;
  T* object = new (block) T(args...);
  used_bytes(block);
  return object;
}

inline G4ParticleDefinition* particle(void* p) { return static_cast<G4ParticleDefinition*>(p); }

}  // namespace calo
