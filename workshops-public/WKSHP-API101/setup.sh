#!/bin/sh
# Run by the student to point tools at the API.
export API_ENDPOINT='{{ API_ENDPOINT }}'
export STUDENT_ID={{ STDID }}
