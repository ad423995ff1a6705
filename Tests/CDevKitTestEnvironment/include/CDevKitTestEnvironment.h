#ifndef CDEVKIT_TEST_ENVIRONMENT_H
#define CDEVKIT_TEST_ENVIRONMENT_H

/// The private directory this test process made at start-up for the XDG base
/// directories (config, data, state) of itself and every child it starts; NULL
/// if it could not be made.
const char *CDevKitTestEnvironment_home(void);

#endif
